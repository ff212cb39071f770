"""Starting a Kite link, listing, unlinking and re-linking connections."""

from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from brokers import oauth_state
from brokers.models import BrokerApp, BrokerConnection
from brokers.tests.factories import BrokerAppFactory, BrokerConnectionFactory, linked_kite_account
from conftest import client_for

pytestmark = pytest.mark.django_db

ROOT = "https://kite.test"


@pytest.fixture(autouse=True)
def kite_settings(settings):
    settings.THOR_KITE_API_ROOT = ROOT
    settings.THOR_KITE_LOGIN_URL = "https://login.kite.test/connect/login"
    settings.THOR_PUBLIC_URL = "https://thor.test"


def state_of(oauth_url: str) -> oauth_state.OAuthState:
    redirect_params = parse_qs(urlsplit(oauth_url).query)["redirect_params"][0]
    return oauth_state.consume(parse_qs(redirect_params)["state"][0])


def start_test_oauth(client, **fields):
    body = {"api_key": "myownkey01", "api_secret": "myownsecret01", "frontend_url": "https://app.acme.test", **fields}
    return client.post("/api/auth/broker/test-oauth", body, format="json")


class TestTestOAuth:
    def test_stores_the_users_own_app_and_answers_the_seed_000_contract(self, alice_client, alice):
        response = start_test_oauth(alice_client)

        assert response.status_code == 200, response.json()
        body = response.json()
        assert set(body) == {"status", "message", "oauth_url", "redirect_url"}
        assert body["status"] == "success"
        assert body["redirect_url"] == "https://thor.test/api/auth/broker/callback"
        assert body["oauth_url"].startswith("https://login.kite.test/connect/login?")
        app = BrokerApp.objects.get(owner=alice)
        assert (app.api_key, app.api_secret, app.tenant) == ("myownkey01", "myownsecret01", alice.tenant)
        state = state_of(body["oauth_url"])
        assert (state.user_id, state.app_id, state.frontend_origin) == (alice.pk, app.pk, "https://app.acme.test")
        assert BrokerConnection.objects.get(pk=state.connection_id).status == "pending"
        assert "myownsecret01" not in response.content.decode()

    def test_accepts_the_fields_in_the_query_string(self, alice_client, alice):
        response = alice_client.post(
            "/api/auth/broker/test-oauth/?api_key=querykey01&api_secret=querysecret01&frontend_url=http://localhost:5173"
        )

        assert response.status_code == 200, response.json()
        assert state_of(response.json()["oauth_url"]).frontend_origin == "http://localhost:5173"

    def test_starting_twice_keeps_one_app_and_one_pending_connection(self, alice_client, alice):
        start_test_oauth(alice_client)
        start_test_oauth(alice_client, api_secret="rotatedsecret02")

        app = BrokerApp.objects.get(owner=alice)
        assert app.api_secret == "rotatedsecret02"
        assert BrokerConnection.objects.filter(user=alice).count() == 1

    @pytest.mark.parametrize(
        "frontend_url",
        [
            "https://evil.test",
            "https://app.acme.test.evil.test",
            "javascript:alert(1)//https://app.acme.test",
            "https://globex.test",
            "//app.acme.test",
            "https://user@app.acme.test",
            "https://app.acme.test/evil/path?x=1",
            "https://app.acme.test?next=https://evil.test",
        ],
    )
    def test_a_frontend_outside_the_tenants_origins_is_refused_before_anything_is_stored(
        self, alice_client, alice, frontend_url
    ):
        response = start_test_oauth(alice_client, frontend_url=frontend_url)

        assert response.status_code == 400
        assert response.json()["code"] == "origin_not_allowed"
        assert "frontend_url" in response.json()["errors"]
        assert not BrokerApp.objects.exists() and not BrokerConnection.objects.exists()

    def test_an_allowed_origin_with_a_trailing_slash_is_the_same_origin(self, alice_client):
        response = start_test_oauth(alice_client, frontend_url="https://app.acme.test/")

        assert response.status_code == 200

    @pytest.mark.parametrize(
        "fields, field",
        [
            ({"api_key": ""}, "api_key"),
            ({"api_key": "has space1"}, "api_key"),
            ({"api_key": "<script>x"}, "api_key"),
            ({"api_key": "k" * 65}, "api_key"),
            ({"api_secret": "short"}, "api_secret"),
            ({"api_secret": "semi;colon1"}, "api_secret"),
            ({"api_secret": ["a", "list"]}, "api_secret"),
        ],
    )
    def test_bad_credentials_name_the_field(self, alice_client, fields, field):
        response = start_test_oauth(alice_client, **fields)

        assert response.status_code == 400
        assert field in response.json()["errors"]
        assert not BrokerApp.objects.exists()

    def test_a_json_array_body_is_a_400(self, alice_client):
        response = alice_client.post("/api/auth/broker/test-oauth", [1, 2], format="json")

        assert response.status_code == 400

    def test_needs_a_signed_in_user(self, anon_client, tenant):
        response = start_test_oauth(anon_client)

        assert response.status_code == 401
        assert response.json()["status_code"] == 401


class TestTenantKiteConnect:
    def test_answers_the_login_url_of_the_tenants_app(self, alice_client, alice):
        app = BrokerAppFactory(tenant=alice.tenant)

        response = alice_client.post(
            "/api/brokers/kite/connect/", {"frontend_url": "http://localhost:5173"}, format="json"
        )

        assert response.status_code == 200, response.json()
        assert parse_qs(urlsplit(response.json()["oauth_url"]).query)["api_key"] == [app.api_key]
        assert state_of(response.json()["oauth_url"]).app_id == app.pk

    def test_another_tenants_app_is_not_offered(self, charlie_client, alice):
        BrokerAppFactory(tenant=alice.tenant)

        response = charlie_client.post("/api/brokers/kite/connect/", {}, format="json")

        assert response.status_code == 404
        assert response.json()["code"] == "no_kite_app"

    def test_needs_a_signed_in_user(self, anon_client):
        assert anon_client.post("/api/brokers/kite/connect/", {}, format="json").status_code == 401


class TestConnectionList:
    def test_lists_status_and_expiries_never_a_token(self, alice_client, alice, bob):
        account = linked_kite_account(alice, access_token="super-secret-access", refresh_token="super-secret-refresh")
        linked_kite_account(bob)

        response = alice_client.get("/api/brokers/connections")

        assert response.status_code == 200
        (connection,) = response.json()
        assert connection["id"] == account.connection_id
        assert connection["status"] == "active" and connection["broker"] == "kite"
        assert connection["broker_user_id"] == account.broker_account_id
        assert connection["access_expires_at"] and "last_sync_at" in connection and "last_error" in connection
        text = response.content.decode()
        assert "super-secret" not in text and "token" not in " ".join(connection)
        assert account.connection.app.api_secret not in text

    def test_a_user_with_none_gets_an_empty_list(self, bob_client):
        assert bob_client.get("/api/brokers/connections/").json() == []

    def test_needs_a_signed_in_user(self, anon_client):
        assert anon_client.get("/api/brokers/connections/").status_code == 401


class TestConnectionDelete:
    def test_ends_the_session_at_kite_wipes_tokens_and_keeps_the_row(self, alice_client, alice):
        connection = linked_kite_account(alice).connection
        with responses.RequestsMock() as kite:
            kite.delete(f"{ROOT}/session/token", json={"status": "success", "data": True})

            response = alice_client.delete(f"/api/brokers/connections/{connection.pk}")

            assert parse_qs(urlsplit(kite.calls[0].request.url).query)["api_key"] == [connection.app.api_key]
        assert response.status_code == 200
        assert response.json()["status"] == "revoked"
        connection.refresh_from_db()
        assert (connection.status, connection.access_token, connection.refresh_token) == ("revoked", "", "")
        assert connection.accounts.count() == 1

    def test_still_unlinks_when_kite_is_down(self, alice_client, alice):
        connection = linked_kite_account(alice).connection
        with responses.RequestsMock() as kite:
            kite.delete(
                f"{ROOT}/session/token",
                status=503,
                json={"status": "error", "error_type": "NetworkException", "message": "down"},
            )

            response = alice_client.delete(f"/api/brokers/connections/{connection.pk}/")

        assert response.status_code == 200
        connection.refresh_from_db()
        assert connection.status == "revoked" and connection.access_token == ""

    @pytest.mark.parametrize("intruder", ["bob", "charlie"])
    def test_other_users_connections_are_not_found(self, request, alice, intruder):
        connection = linked_kite_account(alice).connection

        response = client_for(request.getfixturevalue(intruder)).delete(f"/api/brokers/connections/{connection.pk}")

        assert response.status_code == 404
        connection.refresh_from_db()
        assert connection.status == "active"

    def test_needs_a_signed_in_user(self, anon_client, alice):
        connection = linked_kite_account(alice).connection

        assert anon_client.delete(f"/api/brokers/connections/{connection.pk}").status_code == 401


class TestConnectionReconnect:
    def test_a_new_login_url_for_the_same_row(self, alice_client, alice):
        connection = linked_kite_account(alice, status="expired", access_token="").connection

        response = alice_client.post(
            f"/api/brokers/connections/{connection.pk}/reconnect",
            {"frontend_url": "https://app.acme.test"},
            format="json",
        )

        assert response.status_code == 200, response.json()
        state = state_of(response.json()["oauth_url"])
        assert (state.connection_id, state.app_id) == (connection.pk, connection.app_id)

    def test_refuses_a_foreign_frontend(self, alice_client, alice):
        connection = linked_kite_account(alice).connection

        response = alice_client.post(
            f"/api/brokers/connections/{connection.pk}/reconnect/",
            {"frontend_url": "https://globex.test"},
            format="json",
        )

        assert response.status_code == 400
        assert response.json()["code"] == "origin_not_allowed"

    @pytest.mark.parametrize("intruder", ["bob", "charlie"])
    def test_other_users_connections_are_not_found(self, request, alice, intruder):
        connection = BrokerConnectionFactory(user=alice)

        response = client_for(request.getfixturevalue(intruder)).post(
            f"/api/brokers/connections/{connection.pk}/reconnect", {}, format="json"
        )

        assert response.status_code == 404

    def test_needs_a_signed_in_user(self, anon_client, alice):
        connection = BrokerConnectionFactory(user=alice)

        assert anon_client.post(f"/api/brokers/connections/{connection.pk}/reconnect").status_code == 401
