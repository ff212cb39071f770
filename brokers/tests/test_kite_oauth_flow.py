"""End to end over real HTTP: Thor's test client on one side, the broker sandbox on the other.

register -> test-oauth -> sandbox login page -> credentials -> Thor's callback -> SPA redirect
-> holdings, plus the hostile callbacks and the broker faults the flow must survive.
"""

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core import signing
from django_redis import get_redis_connection

from accounts.models import TradingAccount
from brokers import oauth_state
from brokers.models import BrokerConnection
from brokers.tests.sandbox_fixtures import (
    CALLBACK,
    SPA,
    follow,
    link,
    log_in_at_kite,
    sandbox_calls,
    sandbox_fault,
    spa_params,
    start,
)
from conftest import client_for
from identity.models import User
from thor import snapshots
from thor.tests.browser_pages import assert_login_link_page, opener_kept

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


@pytest.fixture
def user_client(tenant):
    response = client_for().post(
        "/api/auth/register/",
        {"email": "dev@acme.test", "password": "a-Strong-passphrase-42", "tenant": "acme"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return client_for(User.objects.get(email="dev@acme.test"))


def test_the_whole_flow_links_the_account_and_serves_its_holdings(sandbox, user_client):
    oauth_url = start(user_client)

    response = follow(log_in_at_kite(oauth_url))

    assert spa_params(response) == {"status": "success", "user_id": "AB1234", "parent_origin": SPA}
    assert response["Cache-Control"] == "no-store" and response["Referrer-Policy"] == "no-referrer"
    connection = BrokerConnection.objects.get(broker_user_id="AB1234")
    assert connection.status == "active" and connection.access_token and connection.access_expires_at
    account = TradingAccount.objects.get(connection=connection)
    assert (account.mode, account.currency, account.display_name, account.is_primary) == (
        "live",
        "INR",
        "Zerodha AB1234",
        False,
    )
    assert TradingAccount.objects.filter(user=connection.user, is_primary=True, mode="paper").exists()

    holdings = user_client.get("/api/portfolio/holdings")

    assert holdings.status_code == 200, holdings.json()
    body = holdings.json()
    assert body["source"] == "live" and body["as_of"]
    assert body["data"] and all(h["last_price"] > 0 for h in body["data"])
    assert all(isinstance(h["quantity"], int) and h["tradingsymbol"] for h in body["data"])
    assert user_client.get("/api/portfolio/holdings").json()["source"] == "cache"


def test_profile_and_quote_aliases(sandbox, user_client):
    link(user_client)
    token = user_client.get("/api/portfolio/holdings").json()["data"][0]["instrument_token"]

    profile = user_client.get("/api/user/profile")
    quote = user_client.get(f"/api/market/quote/{token}")

    assert profile.status_code == 200 and profile.json()["data"]["user_id"] == "AB1234"
    assert quote.status_code == 200, quote.json()
    kite_quote = quote.json()["data"][str(token)]
    assert kite_quote["instrument_token"] == token and kite_quote["last_price"] > 0


def test_a_sandbox_connection_may_trade_from_its_first_link(sandbox, user_client):
    assert link(user_client).connection.trading_enabled


def test_a_real_kite_connection_starts_with_trading_off_and_a_relink_keeps_the_tenants_choice(
    sandbox, user_client, settings
):
    settings.THOR_KITE_IS_SANDBOX = False
    account = link(user_client)
    assert not account.connection.trading_enabled
    BrokerConnection.objects.filter(pk=account.connection_id).update(trading_enabled=True, status="expired")

    assert link(user_client).connection.trading_enabled


def test_logging_in_again_repairs_the_same_connection(sandbox, user_client):
    first = link(user_client)
    BrokerConnection.objects.filter(pk=first.connection_id).update(status="expired", access_token="")

    second = link(user_client)

    assert second.pk == first.pk and second.connection_id == first.connection_id
    assert BrokerConnection.objects.count() == 1
    assert BrokerConnection.objects.get().status == "active"


def test_reconnect_repairs_the_same_row(sandbox, user_client):
    account = link(user_client)
    BrokerConnection.objects.filter(pk=account.connection_id).update(status="expired", access_token="")

    answer = user_client.post(f"/api/brokers/connections/{account.connection_id}/reconnect", {}, format="json")
    response = follow(log_in_at_kite(answer.json()["oauth_url"]))

    assert spa_params(response)["status"] == "success"
    assert list(BrokerConnection.objects.values_list("pk", "status")) == [(account.connection_id, "active")]


class TestPopup:
    """Seed 000 runs the Kite login in a popup whose /broker-callback page posts to window.opener: a
    `Cross-Origin-Opener-Policy: same-origin` on any hop of it would sever the popup from its opener."""

    def test_every_answer_of_the_callback_keeps_the_opener(self, sandbox, user_client):
        location = log_in_at_kite(start(user_client))
        cancelled = log_in_at_kite(start(user_client)).replace("status=success", "status=cancelled")

        answers = {
            "success": follow(location),
            "used": follow(location),
            "denied": follow(cancelled),
            "forged": client_for().get("/api/auth/broker/callback?request_token=abc&status=success&state=forged"),
        }

        assert {name: opener_kept(answer) for name, answer in answers.items()} == dict.fromkeys(answers, True)
        assert answers["success"].status_code == 302 and answers["forged"].status_code == 400

    def test_the_api_keeps_severing_openers_elsewhere(self, user_client):
        for response in (user_client.get("/api/brokers/connections"), client_for().get("/api/health")):
            assert response["Cross-Origin-Opener-Policy"] == "same-origin"
        started = user_client.post(
            "/api/auth/broker/test-oauth",
            {"api_key": "k" * 12, "api_secret": "s" * 16, "frontend_url": SPA},
            format="json",
        )
        assert started.status_code == 200 and started["Cross-Origin-Opener-Policy"] == "same-origin"


class TestHostileCallbacks:
    def test_a_replayed_callback_goes_back_to_the_spa_saying_the_link_was_used(self, sandbox, user_client):
        location = log_in_at_kite(start(user_client))
        assert spa_params(follow(location))["status"] == "success"

        replay = follow(location)

        assert spa_params(replay) == {"status": "error", "error": "state_used", "parent_origin": SPA}
        assert BrokerConnection.objects.filter(status="active").count() == 1

    def test_a_request_token_used_twice_is_refused_by_kite(self, sandbox, user_client):
        used = parse_qs(urlsplit(log_in_at_kite(start(user_client))).query)
        follow(f"{CALLBACK}?request_token={used['request_token'][0]}&status=success&state={used['state'][0]}")
        fresh_state = parse_qs(parse_qs(urlsplit(start(user_client)).query)["redirect_params"][0])["state"][0]

        response = follow(f"{CALLBACK}?request_token={used['request_token'][0]}&status=success&state={fresh_state}")

        assert spa_params(response) == {"status": "error", "error": "exchange_failed", "parent_origin": SPA}

    def test_a_forged_state_is_a_page_a_person_can_read(self, sandbox, user_client):
        forged = signing.dumps(
            {
                "user_id": 1,
                "tenant_slug": "acme",
                "app_id": 1,
                "connection_id": 1,
                "frontend_origin": "https://evil.test",
                "nonce": "n",
            },
            salt="not-ours",
        )

        response = follow(f"{CALLBACK}?request_token=abc&status=success&state={forged}")

        assert_login_link_page(response, forged, "evil.test", "abc")

    @pytest.mark.parametrize(
        "state",
        ["", "forged", "<script>alert(1)</script>", "x" * 5000, "a:b:c", "%00"],
        ids=["empty", "word", "markup", "huge", "colons", "nul"],
    )
    def test_hostile_states_get_the_page_and_nothing_echoed(self, state):
        response = client_for().get(
            "/api/auth/broker/callback", {"request_token": "abc", "status": "success", "state": state}
        )

        assert_login_link_page(response, "<script>", "x" * 100)

    def test_an_expired_state_goes_back_to_the_spa_and_never_reaches_kite(self, sandbox, user_client):
        location = log_in_at_kite(start(user_client))

        # The clock moves for the whole process only while Thor reads the callback, which refuses
        # the state before it calls the sandbox: the sandbox never sees the moved clock.
        with time_machine.travel(time.time() + 601, tick=False):
            response = follow(location)

        assert spa_params(response) == {"status": "error", "error": "state_expired", "parent_origin": SPA}
        assert not BrokerConnection.objects.filter(status="active").exists()
        assert sandbox_calls(sandbox, "POST /session/token") == 0

    def test_a_cancelled_login_reports_denied(self, sandbox, user_client):
        state = parse_qs(parse_qs(urlsplit(start(user_client)).query)["redirect_params"][0])["state"][0]

        response = follow(f"{CALLBACK}?action=login&status=cancelled&state={state}")

        assert spa_params(response) == {"status": "error", "error": "denied", "parent_origin": SPA}

    def test_the_error_never_carries_exception_text(self, sandbox, user_client, settings):
        state = parse_qs(parse_qs(urlsplit(start(user_client)).query)["redirect_params"][0])["state"][0]
        settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"  # nothing listens there

        response = follow(f"{CALLBACK}?request_token=abc&status=success&state={state}")

        assert spa_params(response)["error"] == "exchange_failed"
        assert "Connection" not in response["Location"]

    def test_a_state_issued_for_an_origin_the_tenant_dropped_is_a_page(self, sandbox, user_client, tenant):
        location = log_in_at_kite(start(user_client, frontend_url="https://app.acme.test"))
        tenant.allowed_origins = [SPA]
        tenant.save()

        response = follow(location)

        assert_login_link_page(response, "app.acme.test")

    def test_a_used_state_whose_origin_the_tenant_dropped_is_a_page_too(self, sandbox, user_client, tenant):
        location = log_in_at_kite(start(user_client, frontend_url="https://app.acme.test"))
        follow(location)
        tenant.allowed_origins = [SPA]
        tenant.save()

        assert_login_link_page(follow(location), "app.acme.test")


class TestBrokerFaults:
    def holdings_after_fault(self, sandbox, client, account, **fault):
        assert client.get("/api/portfolio/holdings").status_code == 200
        snapshots.forget(snapshots.key("acme", f"connection-{account.connection_id}", "holdings"))
        sandbox_fault(sandbox, path="/portfolio/holdings", count=1, **fault)
        return client.get("/api/portfolio/holdings")

    @pytest.mark.parametrize("fault", [{"kind": "429"}, {"kind": "5xx"}, {"kind": "drop"}])
    def test_a_transient_fault_serves_the_last_good_snapshot(self, sandbox, user_client, fault):
        account = link(user_client)

        response = self.holdings_after_fault(sandbox, user_client, account, **fault)

        assert response.status_code == 200, response.json()
        assert response.json()["source"] == "stale" and response.json()["data"]
        assert BrokerConnection.objects.get().status == "active"

    def test_a_timeout_serves_the_last_good_snapshot(self, sandbox, user_client, settings):
        account = link(user_client)
        settings.THOR_KITE_TIMEOUT = 0.3

        response = self.holdings_after_fault(sandbox, user_client, account, kind="latency", ms=1500)

        assert response.status_code == 200 and response.json()["source"] == "stale"

    def test_without_a_snapshot_a_fault_is_a_clear_503(self, sandbox, user_client):
        link(user_client)
        sandbox_fault(sandbox, kind="5xx", path="/portfolio/holdings", count=1)

        response = user_client.get("/api/portfolio/holdings")

        assert response.status_code == 503
        assert response.json()["code"] == "broker_unavailable"
        assert BrokerConnection.objects.get().last_error == "unavailable"

    def test_an_expired_token_marks_the_connection_and_asks_to_relink(self, sandbox, user_client):
        account = link(user_client)

        response = self.holdings_after_fault(sandbox, user_client, account, kind="token_expired")

        assert response.status_code == 409
        assert response.json()["code"] == "reauth_required"
        connection = BrokerConnection.objects.get()
        assert (connection.status, connection.access_token, connection.last_error) == ("expired", "", "token_expired")
        assert user_client.get("/api/user/profile").status_code == 409
        assert TradingAccount.objects.filter(pk=account.pk).exists()

    def test_kite_down_at_login_ends_in_an_error_redirect_and_nothing_linked(self, sandbox, user_client):
        location = log_in_at_kite(start(user_client))
        sandbox_fault(sandbox, kind="5xx", path="/session/token", count=1)

        response = follow(location)

        assert spa_params(response)["error"] == "exchange_failed"
        assert not BrokerConnection.objects.exclude(status="pending").exists()


def test_state_in_the_login_url_is_the_one_thor_signed(sandbox, user_client):
    redirect_params = parse_qs(urlsplit(start(user_client)).query)["redirect_params"][0]

    state = oauth_state.consume(parse_qs(redirect_params)["state"][0])

    assert state.frontend_origin == SPA


class TestLinkConfirmation:
    """Tenants whose SPA confirms links: a forwarded login link cannot link someone else's account."""

    @pytest.fixture(autouse=True)
    def confirming_tenant(self, tenant):
        tenant.broker_link_confirmation = True
        tenant.save()

    def parked_code(self, user_client) -> str:
        params = spa_params(follow(log_in_at_kite(start(user_client))))
        assert params["status"] == "confirm" and "user_id" not in params
        return params["code"]

    def test_the_callback_parks_the_link_until_the_user_confirms_it(self, sandbox, user_client):
        code = self.parked_code(user_client)
        assert not BrokerConnection.objects.filter(broker_user_id="AB1234").exists()

        response = user_client.post("/api/brokers/connections/confirm", {"code": code}, format="json")

        assert response.status_code == 200, response.json()
        assert response.json()["status"] == "active" and response.json()["broker_user_id"] == "AB1234"
        assert "access_token" not in response.json()
        assert TradingAccount.objects.filter(mode="live", broker_account_id="AB1234").exists()
        assert user_client.get("/api/portfolio/holdings").status_code == 200

    def test_someone_else_who_finished_the_login_cannot_use_the_code(self, sandbox, user_client, bob_client, bob):
        code = self.parked_code(user_client)

        response = bob_client.post("/api/brokers/connections/confirm", {"code": code}, format="json")

        assert response.status_code == 404
        assert not BrokerConnection.objects.filter(broker_user_id="AB1234", status="active").exists()

    def test_a_code_works_once(self, sandbox, user_client):
        code = self.parked_code(user_client)
        user_client.post("/api/brokers/connections/confirm", {"code": code}, format="json")

        again = user_client.post("/api/brokers/connections/confirm", {"code": code}, format="json")

        assert again.status_code == 404

    @pytest.mark.parametrize("code", ["", "short", "x" * 65, "../../etc/passwd", None])
    def test_malformed_codes_are_a_400(self, user_client, code):
        response = user_client.post("/api/brokers/connections/confirm", {"code": code}, format="json")

        assert response.status_code == 400
        assert "code" in response.json()["errors"]

    def test_confirming_needs_a_signed_in_user(self, anon_client):
        response = anon_client.post("/api/brokers/connections/confirm", {"code": "a" * 32}, format="json")

        assert response.status_code == 401

    def test_the_parked_session_is_never_in_the_cache_in_clear(self, sandbox, user_client):
        code = self.parked_code(user_client)
        live_tokens = set(sandbox.state.kite.sessions)
        redis = get_redis_connection("default")
        cached = b"".join(redis.get(key) or b"" for key in redis.scan_iter() if redis.type(key) == b"string")

        assert live_tokens and cached
        assert not any(token.encode() in cached for token in live_tokens)
        user_client.post("/api/brokers/connections/confirm", {"code": code}, format="json")
        assert BrokerConnection.objects.get(broker_user_id="AB1234").access_token in live_tokens
