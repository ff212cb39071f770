"""`GET /api/brokers/connections`: each connection's health, for its owner only, never a token, in a
constant number of queries however many connections; a Kite connection's says whether its live orders are
checked against their price band (its tenant has a Kite market-data connection)."""

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from brokers.models import BrokerConnection, BrokerKind
from brokers.services import broker_call
from brokers.services.market_data import market_data_user
from brokers.tests.factories import BrokerAppFactory, BrokerConnectionFactory, linked_kite_account, order
from brokers.tests.sandbox_fixtures import link, sandbox_fault
from conftest import client_for
from market.selectors import market_data_connection

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "broker",
    "app_id",
    "app_name",
    "status",
    "reauth_due_at",
    "broker_user_id",
    "access_expires_at",
    "refresh_expires_at",
    "last_sync_at",
    "last_error",
    "trading_enabled",
    "order_egress",  # "set" | "not set", never the URL (brokers.egress)
    "created_at",
    "updated_at",
}
HEALTH = {
    "calls",
    "last_success_at",
    "last_error",
    "token_expires_at",
    "rate_budget",
    "orders_unknown",
    "orders_needs_review",
    "egress",
    "price_bands",  # checked | unchecked_no_market_data | null (no band applies: not Kite)
}


def listed(client) -> list[dict]:
    response = client.get("/api/brokers/connections")
    assert response.status_code == 200, response.content
    return response.json()


class TestHealth:
    def test_each_connection_keeps_its_fields_and_gains_its_health(self, alice_client, alice):
        account = linked_kite_account(alice)
        order(account, "UNKNOWN", 1)
        order(account, "NEEDS_REVIEW", 2)

        (connection,) = listed(alice_client)

        assert set(connection) == FIELDS | {"health"}
        health = connection["health"]
        assert set(health) == HEALTH
        assert (health["calls"], health["last_success_at"], health["last_error"]) == ("unknown", None, None)
        assert health["token_expires_at"] == connection["access_expires_at"]
        assert (health["orders_unknown"], health["orders_needs_review"]) == (1, 1)
        assert {budget["bucket"] for budget in health["rate_budget"]} == {"quote", "orders", "other"}
        assert {"bucket": "quote", "left": 1, "capacity": 1, "per_seconds": 1} in health["rate_budget"]

    def test_a_failed_call_then_a_good_one(self, sandbox, alice_client):
        connection = link(alice_client).connection
        sandbox_fault(sandbox, kind="5xx", path="/user/profile", count=1)
        with pytest.raises(Exception, match="Kite is unavailable"):
            broker_call(connection, lambda adapter: adapter.profile())

        failing = listed(alice_client)[0]["health"]
        broker_call(connection, lambda adapter: adapter.profile())
        recovered = listed(alice_client)[0]["health"]

        assert failing["calls"] == "failing" and failing["last_success_at"] is None
        assert {key: failing["last_error"][key] for key in ("code", "message")} == {
            "code": "unavailable",
            "message": "Kite is unavailable.",
        }
        assert recovered["calls"] == "ok" and recovered["last_success_at"] > recovered["last_error"]["at"]

    def test_never_a_token_or_secret(self, sandbox, alice_client):
        connection = link(alice_client).connection
        sandbox_fault(sandbox, kind="token_expired", path="/user/profile", count=1)
        secrets = [connection.access_token, connection.app.api_secret]
        with pytest.raises(Exception, match="expired"):
            broker_call(connection, lambda adapter: adapter.profile())

        text = alice_client.get("/api/brokers/connections").content.decode()

        assert '"code":"token_expired"' in text.replace(" ", "")
        assert not any(secret in text for secret in secrets)


class TestTenancy:
    def test_another_users_connections_are_not_listed_nor_counted(self, alice_client, alice, bob, charlie):
        mine = linked_kite_account(alice)
        for user in (bob, charlie):
            theirs = linked_kite_account(user)
            order(theirs, "UNKNOWN", 1)

        (connection,) = listed(alice_client)

        assert connection["id"] == mine.connection_id
        assert connection["health"]["orders_unknown"] == 0

    @pytest.mark.parametrize("intruder", ["bob", "charlie"])
    def test_another_users_connection_is_404(self, request, alice, intruder):
        connection = linked_kite_account(alice).connection

        response = client_for(request.getfixturevalue(intruder)).delete(f"/api/brokers/connections/{connection.pk}")

        assert response.status_code == 404
        assert "health" not in response.content.decode()


class TestQueries:
    def test_the_list_costs_the_same_queries_for_one_connection_or_many(self, alice_client, alice):
        def queries_to_list() -> int:
            with CaptureQueriesContext(db) as captured:
                listed(alice_client)
            return len(captured)

        order(linked_kite_account(alice), "UNKNOWN", 1)
        listed(alice_client)  # the user's first request reads what later ones find cached
        one = queries_to_list()
        for n in range(4):
            account = linked_kite_account(alice)
            order(account, "NEEDS_REVIEW", n)
        five = queries_to_list()

        assert len(listed(alice_client)) == 5
        assert five == one


class TestSchema:
    def test_the_health_object_is_documented(self, openapi_schema):
        schemas = openapi_schema["components"]["schemas"]

        health_ref = schemas["ConnectionOutput"]["properties"]["health"]["allOf"][0]["$ref"]
        health = schemas[health_ref.rsplit("/", 1)[1]]
        assert set(health["properties"]) == set(health["required"]) == HEALTH
        assert "health" in schemas["ConnectionOutput"]["required"]


def own_app_kite_account(user, **connection_fields):
    """A live Kite account linked through the user's own app: its session never serves the tenant's market data."""
    return linked_kite_account(user, app=BrokerAppFactory(tenant=user.tenant, owner=user), **connection_fields)


def market_data_session(tenant, kind=BrokerKind.KITE, **connection_fields) -> BrokerConnection:
    """The tenant's market-data login on its shared app of `kind` (brokers.services.market_data)."""
    app = BrokerAppFactory(tenant=tenant, kind=kind)
    return BrokerConnectionFactory.create(user=market_data_user(tenant), app=app, **connection_fields)


class TestPriceBands:
    def test_a_tenant_with_a_market_data_connection_has_its_orders_checked(self, alice_client, alice, tenant):
        own_app_kite_account(alice)
        market_data_session(tenant)

        (connection,) = listed(alice_client)

        assert connection["health"]["price_bands"] == "checked"

    def test_a_customers_active_session_on_the_shared_app_serves_too(self, alice_client, alice):
        # market.selectors.market_data_connection picks it when the tenant has no login of its own.
        linked_kite_account(alice)

        (connection,) = listed(alice_client)

        assert connection["health"]["price_bands"] == "checked"

    @pytest.mark.parametrize(
        "market_data",
        [
            "none",
            "expired",
            "revoked",
            "active_without_a_token",
            "only_a_users_own_app",
            "another_tenants",
            "another_tenants_customer",
            "schwab",
        ],
    )
    def test_without_one_its_orders_go_unchecked(self, alice_client, alice, bob, charlie, tenant, market_data):
        own_app_kite_account(alice)
        if market_data == "expired":
            market_data_session(tenant, status=BrokerConnection.Status.EXPIRED)
        elif market_data == "revoked":
            market_data_session(tenant, status=BrokerConnection.Status.REVOKED, access_token="")
        elif market_data == "active_without_a_token":
            market_data_session(tenant, access_token="")
        elif market_data == "only_a_users_own_app":
            own_app_kite_account(bob)
        elif market_data == "another_tenants":
            market_data_session(charlie.tenant)
        elif market_data == "another_tenants_customer":
            linked_kite_account(charlie)
        elif market_data == "schwab":
            market_data_session(tenant, kind=BrokerKind.SCHWAB)

        (connection,) = listed(alice_client)

        assert connection["health"]["price_bands"] == "unchecked_no_market_data"
        # What the order's band check itself would find (accounts.price_bands through market.quotes).
        assert market_data_connection(tenant=tenant, kind=BrokerKind.KITE) is None

    def test_the_answer_follows_the_session_as_it_starts_and_ends(self, alice_client, alice, tenant):
        own_app_kite_account(alice)
        before = listed(alice_client)[0]["health"]["price_bands"]
        session = market_data_session(tenant)
        during = listed(alice_client)[0]["health"]["price_bands"]
        session.status = BrokerConnection.Status.EXPIRED
        session.save(update_fields=["status"])
        after = listed(alice_client)[0]["health"]["price_bands"]

        assert (before, during, after) == ("unchecked_no_market_data", "checked", "unchecked_no_market_data")

    def test_a_schwab_connection_has_no_band_to_check(self, alice_client, alice, tenant):
        market_data_session(tenant)
        linked_kite_account(alice, app=BrokerAppFactory(tenant=tenant, owner=alice, kind=BrokerKind.SCHWAB))

        (connection,) = listed(alice_client)

        assert connection["broker"] == "schwab" and connection["health"]["price_bands"] is None

    def test_never_the_market_data_sessions_token_nor_any_secret(self, alice_client, alice, tenant):
        mine = own_app_kite_account(alice, access_token="alice-access-token-0001").connection
        session = market_data_session(tenant, access_token="market-data-token-0001", refresh_token="md-refresh-0001")

        text = alice_client.get("/api/brokers/connections").content.decode()

        assert '"price_bands":"checked"' in text.replace(" ", "")
        for secret in (mine.access_token, session.access_token, session.refresh_token, session.app.api_secret):
            assert secret not in text
        assert session.user.email not in text and session.broker_user_id not in text

    def test_the_list_costs_a_fixed_number_of_queries(self, alice_client, alice, tenant, django_assert_num_queries):
        market_data_session(tenant)
        for _ in range(2):
            own_app_kite_account(alice)
        linked_kite_account(alice, app=BrokerAppFactory(tenant=tenant, owner=alice, kind=BrokerKind.SCHWAB))
        listed(alice_client)  # the user's first request reads what later ones find cached

        # The connections (with app and tenant), the orders needing attention, the tenants with market data.
        with django_assert_num_queries(3):
            connections = listed(alice_client)
        for _ in range(3):
            linked_kite_account(alice)
        with django_assert_num_queries(3):
            more = listed(alice_client)

        assert [c["health"]["price_bands"] for c in connections].count("checked") == 2
        assert len(more) == 6

    def test_an_anonymous_request_is_a_401_in_json(self, anon_client, alice):
        linked_kite_account(alice)

        response = anon_client.get("/api/brokers/connections")

        assert response.status_code == 401 and response["Content-Type"].startswith("application/json")
        assert "price_bands" not in response.content.decode()
