"""Seed 002 end to end through the Schwab sandbox: link, read every path, trade, refresh."""

import time
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import time_machine

from accounts.models import Order, TradingAccount
from accounts.tests.conftest import place
from brokers.models import BrokerConnection
from brokers.tests import schwab_link_steps
from brokers.tests.schwab_link_steps import (
    CLIENT_ID,
    SPA,
    SPA_CALLBACK,
    approve,
    link_schwab,
    relay,
    schwab_fault,
    start,
)
from conftest import client_for
from thor.tests.browser_pages import assert_login_link_page, opener_kept

pytestmark = pytest.mark.django_db

# The Schwab sandbox and the tenant's Schwab app pointing at it.
schwab_sandbox = schwab_link_steps.schwab_sandbox
schwab_app = schwab_link_steps.schwab_app


@pytest.fixture
def linked(alice_client, schwab_sandbox, schwab_app):
    return link_schwab(alice_client)


def accounts_of(connection) -> dict[str, TradingAccount]:
    """The live accounts of the connection by kind: the sandbox's demo login has one of each."""
    accounts = {}
    for account in TradingAccount.objects.filter(connection=connection).order_by("id"):
        kind = "MARGIN" if "Margin" in account.display_name else "CASH"
        accounts[kind] = account
    return accounts


def schwab_calls(sandbox, method_and_path: str) -> int:
    return requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["by_path"].get(method_and_path, 0)


class TestStart:
    def test_the_authorize_url_carries_the_raw_client_id_exact_redirect_scope_and_a_state(
        self, alice_client, schwab_sandbox, schwab_app
    ):
        url = urlsplit(start(alice_client))
        query = parse_qs(url.query)

        assert f"{url.scheme}://{url.netloc}{url.path}" == f"{schwab_sandbox.url}/v1/oauth/authorize"
        assert query["client_id"] == [CLIENT_ID]
        assert query["redirect_uri"] == [SPA_CALLBACK]
        assert query["response_type"] == ["code"] and query["scope"] == ["api"]
        assert query["state"][0]

    def test_a_tenant_without_a_schwab_app_is_told_so(self, alice_client):
        response = alice_client.get("/api/schwab/oauth/start")

        assert response.status_code == 404
        assert response.json()["code"] == "no_schwab_app" and response.json()["error"]

    def test_an_unknown_frontend_origin_is_refused(self, alice_client, schwab_app):
        response = alice_client.get("/api/schwab/oauth/start/", {"frontend_url": "https://evil.test"})

        assert response.status_code == 400 and response.json()["code"] == "origin_not_allowed"

    def test_needs_a_login(self, anon_client, schwab_app):
        response = anon_client.get("/api/schwab/oauth/start/")

        assert response.status_code == 401 and response["Content-Type"].startswith("application/json")


class TestCallback:
    def test_the_relayed_code_links_both_accounts(self, alice_client, alice, schwab_sandbox, schwab_app):
        response = relay(alice_client, approve(start(alice_client)))

        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["success"] is True
        assert body["connection"]["broker"] == "schwab" and body["connection"]["status"] == "active"
        assert body["connection"]["reauth_due_at"]
        # Never a token: only the names of the health fields about one (its expiry, its rate bucket).
        shown = str(body).lower().replace("reauth", "").replace("token_expires_at", "").replace("'bucket': 'token'", "")
        assert "token" not in shown
        connection = BrokerConnection.objects.get(pk=body["connection"]["id"])
        accounts = accounts_of(connection)
        assert set(accounts) == {"MARGIN", "CASH"}
        for account in accounts.values():
            assert account.user == alice and account.mode == "live" and account.currency == "USD"
            assert len(account.broker_account_id) == 64 and account.account_number.isdigit()

    def test_seed_002s_page_relaying_only_the_code_works_for_the_user_who_started(
        self, alice_client, schwab_sandbox, schwab_app
    ):
        params = approve(start(alice_client))

        response = relay(alice_client, {"code": params["code"]})

        assert response.status_code == 200, response.json()
        assert response.json()["success"] is True

    def test_a_browser_sent_straight_back_is_redirected_to_the_spa(self, alice_client, schwab_sandbox, schwab_app):
        params = approve(start(alice_client))

        response = client_for().get("/api/schwab/oauth/callback/", params, HTTP_ACCEPT="text/html")

        assert response.status_code == 302
        assert response["Location"] == f"{SPA}/?broker=schwab&status=connected"
        assert response["Cache-Control"] == "no-store"
        assert TradingAccount.objects.filter(mode="live").count() == 2

    def test_linking_again_repairs_the_same_rows(self, alice_client, linked):
        again = link_schwab(alice_client)

        assert again.pk == linked.pk
        assert TradingAccount.objects.filter(mode="live").count() == 2

    def test_a_replayed_state_is_refused(self, alice_client, schwab_sandbox, schwab_app):
        auth_url = start(alice_client)
        first = approve(auth_url)
        assert relay(alice_client, first).status_code == 200
        second = approve(auth_url)  # the same state, a new code

        replayed = relay(alice_client, second)

        assert replayed.status_code == 400
        assert replayed.json()["code"] == "state_used" and replayed.json()["error"]

    def test_a_browser_back_with_a_used_or_expired_state_goes_back_to_the_spa_saying_so(
        self, alice_client, schwab_sandbox, schwab_app
    ):
        auth_url = start(alice_client)
        first, second = approve(auth_url), approve(auth_url)  # the same state, two codes
        expiring = approve(start(alice_client))
        browser = client_for()
        assert browser.get("/api/schwab/oauth/callback/", first, HTTP_ACCEPT="text/html").status_code == 302

        used = browser.get("/api/schwab/oauth/callback/", second, HTTP_ACCEPT="text/html")
        with time_machine.travel(time.time() + 601, tick=False):
            expired = browser.get("/api/schwab/oauth/callback/", expiring, HTTP_ACCEPT="text/html")

        assert used["Location"] == f"{SPA}/?broker=schwab&status=error&error=state_used"
        assert expired["Location"] == f"{SPA}/?broker=schwab&status=error&error=state_expired"
        assert opener_kept(used) and opener_kept(expired)

    @pytest.mark.parametrize(
        "state", ["", "forged", "<img src=x onerror=alert(1)>", "s" * 5000, "' OR 1=1 --"], ids=str.__len__
    )
    def test_a_browser_back_with_a_state_thor_never_signed_gets_a_page(self, schwab_sandbox, schwab_app, state):
        response = client_for().get(
            "/api/schwab/oauth/callback/", {"code": "C0.abc", "state": state}, HTTP_ACCEPT="text/html"
        )

        assert_login_link_page(response, "<img", "s" * 100, "OR 1=1", "C0.abc")
        assert not TradingAccount.objects.filter(mode="live").exists()

    def test_the_backend_callback_keeps_a_popups_opener_and_the_rest_of_the_api_does_not(
        self, alice_client, schwab_sandbox, schwab_app
    ):
        params = approve(start(alice_client))

        connected = client_for().get("/api/schwab/oauth/callback/", params, HTTP_ACCEPT="text/html")
        refused = client_for().get("/api/schwab/oauth/callback/", {"code": "x", "state": "forged"})

        assert connected["Location"] == f"{SPA}/?broker=schwab&status=connected"
        assert opener_kept(connected) and opener_kept(refused)
        assert alice_client.get("/api/schwab/accounts/")["Cross-Origin-Opener-Policy"] == "same-origin"

    def test_a_forged_state_is_refused(self, alice_client, schwab_sandbox, schwab_app):
        params = approve(start(alice_client))

        response = relay(alice_client, {**params, "state": params["state"][:-4] + "AAAA"})

        assert response.status_code == 400 and response.json()["code"] == "state_invalid"
        assert not TradingAccount.objects.filter(mode="live").exists()

    def test_another_users_flow_is_not_attached_to_the_relaying_user(
        self, alice_client, bob_client, schwab_sandbox, schwab_app
    ):
        params = approve(start(alice_client))

        response = relay(bob_client, params)

        assert response.status_code == 400 and response.json()["code"] == "state_invalid"
        assert not TradingAccount.objects.filter(mode="live").exists()

    def test_a_garbage_code_is_an_exchange_failure(self, alice_client, schwab_sandbox, schwab_app):
        params = approve(start(alice_client))

        response = relay(alice_client, {**params, "code": "not-a-code"})

        assert response.status_code == 400 and response.json()["code"] == "exchange_failed"

    def test_a_garbage_code_sends_the_browser_back_with_a_short_error(self, alice_client, schwab_sandbox, schwab_app):
        params = approve(start(alice_client))

        response = client_for().get("/api/schwab/oauth/callback/", {**params, "code": "C0.nope@"})

        assert response.status_code == 302
        assert response["Location"] == f"{SPA}/?broker=schwab&status=error&error=exchange_failed"

    def test_an_oversized_code_or_state_is_refused_without_calling_schwab(
        self, alice_client, schwab_sandbox, schwab_app
    ):
        params = approve(start(alice_client))

        too_long_code = relay(alice_client, {**params, "code": "C" * 5000})
        too_long_state = relay(alice_client, {"code": params["code"], "state": "s" * 5000})

        assert too_long_code.status_code == 400 and too_long_code.json()["code"] == "invalid_code"
        assert too_long_state.status_code == 400 and too_long_state.json()["code"] == "state_invalid"

    def test_no_code_answers_seed_002s_message(self, alice_client, schwab_app):
        response = alice_client.get("/api/schwab/oauth/callback/")

        assert response.status_code == 400
        assert response.json()["error"] == "No authorization code provided"
        assert response.json()["status_code"] == 400 and response.json()["code"] == "missing_code"


class TestSeed002Reads:
    def test_accounts_list_schwabs_payload_with_thor_ids_and_masked_numbers(self, alice_client, linked):
        accounts = accounts_of(linked)

        response = alice_client.get("/api/schwab/accounts/")

        assert response.status_code == 200, response.json()
        body = response.json()
        assert {item["thor_account_id"] for item in body} == {account.pk for account in accounts.values()}
        for item in body:
            account = TradingAccount.objects.get(pk=item["thor_account_id"])
            assert item["broker_account_id"] == account.broker_account_id
            assert item["securitiesAccount"]["accountNumber"] == f"****{account.account_number[-4:]}"
            assert account.account_number not in str(item)
            assert item["source"] == "live"

    def test_the_number_map_is_asked_for_at_most_once_a_minute(self, alice_client, linked, schwab_sandbox):
        account = accounts_of(linked)["MARGIN"]
        before = schwab_calls(schwab_sandbox, "GET /trader/v1/accounts/accountNumbers")

        for _ in range(3):
            response = alice_client.get("/api/schwab/account/summary/", {"account_number": account.account_number})
            assert response.status_code == 200

        assert schwab_calls(schwab_sandbox, "GET /trader/v1/accounts/accountNumbers") - before == 1

    def test_summary_by_number_for_the_margin_account(self, alice_client, linked, schwab_sandbox):
        account = accounts_of(linked)["MARGIN"]
        pin = {"NASDAQ:AAPL": 200.0, "NYSE:SPY": 500.0, "NASDAQ:MSFT": 400.0}
        requests.post(f"{schwab_sandbox.url}/_sandbox/prices", json=pin, timeout=5).raise_for_status()

        response = alice_client.get("/api/schwab/account/summary/", {"account_number": account.account_number})

        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["thor_account_id"] == account.pk and body["account_number"] == f"****{account.account_number[-4:]}"
        assert body["currency"] == "USD" and body["source"] == "live" and body["as_of"]
        for figure in ("net_liquidation", "buying_power", "available_funds", "equity", "cash"):
            assert Decimal(body[figure]) >= 0, figure
        # A margin account buys on margin: more buying power than equity.
        assert Decimal(body["buying_power"]) > Decimal(body["available_funds"]) > 0
        # Equity and its percentage are Schwab's own figures for a margin account.
        payload = next(
            item["securitiesAccount"]
            for item in alice_client.get("/api/schwab/accounts/").json()
            if item["thor_account_id"] == account.pk
        )
        balances = payload["currentBalances"]
        assert Decimal(body["equity"]) == Decimal(str(balances["equity"])).quantize(Decimal("0.01"))
        assert Decimal(body["equity_percentage"]) == Decimal(str(balances["equityPercentage"])).quantize(
            Decimal("0.01")
        )

    def test_summary_by_hash_for_the_cash_account(self, alice_client, linked):
        account = accounts_of(linked)["CASH"]

        body = alice_client.get("/api/schwab/account/summary/", {"account_hash": account.broker_account_id}).json()

        assert body["thor_account_id"] == account.pk
        # Cash accounts trade settled cash: buying power is what is available, equity is all of it.
        assert Decimal(body["buying_power"]) == Decimal(body["available_funds"])
        assert Decimal(body["equity"]) == Decimal(body["net_liquidation"])
        assert Decimal(body["equity_percentage"]) == Decimal("100.00")

    def test_summary_without_an_account_is_the_first_one(self, alice_client, linked):
        first = TradingAccount.objects.filter(connection=linked).order_by("id").first()

        body = alice_client.get("/api/schwab/account/summary").json()

        assert body["thor_account_id"] == first.pk

    def test_positions_by_number_and_hash_and_the_legacy_paths(self, alice_client, linked):
        account = accounts_of(linked)["MARGIN"]
        urls = [
            ("/api/schwab/account/positions/", {"account_number": account.account_number}),
            ("/api/schwab/account/positions", {"account_hash": account.broker_account_id}),
            (f"/api/schwab/accounts/{account.account_number}/positions/", {}),
            (f"/api/schwab/accounts/{account.broker_account_id}/positions", {}),
        ]
        for url, params in urls:
            response = alice_client.get(url, params)
            assert response.status_code == 200, (url, response.json())
            symbols = {position["tradingsymbol"] for position in response.json()["positions"]}
            assert {"AAPL", "SPY"} <= symbols, url

    def test_legacy_balances_by_number_and_hash(self, alice_client, linked):
        account = accounts_of(linked)["CASH"]
        for account_id in (account.account_number, account.broker_account_id):
            response = alice_client.get(f"/api/schwab/accounts/{account_id}/balances/")
            assert response.status_code == 200, response.json()
            assert response.json()["thor_account_id"] == account.pk

    def test_another_users_number_or_hash_is_not_found(self, bob_client, linked):
        account = accounts_of(linked)["MARGIN"]
        attempts = [
            ("/api/schwab/account/summary/", {"account_number": account.account_number}),
            ("/api/schwab/account/summary/", {"account_hash": account.broker_account_id}),
            ("/api/schwab/account/positions/", {"account_number": account.account_number}),
            (f"/api/schwab/accounts/{account.account_number}/balances/", {}),
            (f"/api/schwab/accounts/{account.broker_account_id}/positions/", {}),
        ]
        for url, params in attempts:
            response = bob_client.get(url, params)
            assert response.status_code == 404, url
            assert response.json()["error"] and response.json()["code"] == "not_found"

    def test_an_unknown_number_and_hostile_parameters(self, alice_client, linked):
        assert alice_client.get("/api/schwab/account/summary/", {"account_number": "99999999"}).status_code == 404
        assert alice_client.get("/api/schwab/account/summary/", {"account_number": "../x"}).status_code == 404
        assert alice_client.get("/api/schwab/account/summary/", {"account_hash": "' OR 1=1"}).status_code == 404
        oversized = alice_client.get("/api/schwab/account/positions/", {"account_number": "1" * 5000})
        assert oversized.status_code == 400 and "account_number" in oversized.json()["errors"]
        assert alice_client.get(f"/api/schwab/accounts/{'a' * 500}/balances/").status_code == 400

    def test_needs_a_login(self, anon_client):
        for url in ("/api/schwab/accounts/", "/api/schwab/account/summary/", "/api/schwab/account/positions/"):
            assert anon_client.get(url).status_code == 401


class TestBrokerDown:
    def test_a_failing_schwab_answers_the_last_good_snapshot_marked_stale(
        self, alice_client, linked, schwab_sandbox, settings
    ):
        settings.THOR_LIVE_FRESH_SECONDS = 0.001
        account = accounts_of(linked)["MARGIN"]
        fresh = alice_client.get("/api/schwab/account/summary/", {"account_hash": account.broker_account_id}).json()
        schwab_fault(schwab_sandbox, kind="5xx", path="/trader/v1/accounts")

        stale = alice_client.get("/api/schwab/account/summary/", {"account_hash": account.broker_account_id})

        assert stale.status_code == 200
        assert stale.json()["source"] == "stale" and stale.json()["as_of"] == fresh["as_of"]
        assert stale.json()["net_liquidation"] == fresh["net_liquidation"]

    def test_without_a_snapshot_it_is_503_in_our_format(self, alice_client, linked, schwab_sandbox):
        account = accounts_of(linked)["CASH"]
        schwab_fault(schwab_sandbox, kind="5xx", path="/trader/v1/accounts")

        response = alice_client.get("/api/schwab/account/positions/", {"account_hash": account.broker_account_id})

        assert response.status_code == 503
        assert response.json()["code"] == "broker_unavailable" and response.json()["status_code"] == 503
        assert response.json()["error"]


class TestUnifiedOrders:
    def test_a_limit_order_placed_replaced_and_cancelled_keeps_one_identity(self, alice_client, linked, schwab_sandbox):
        account = accounts_of(linked)["MARGIN"]
        placed = place(
            alice_client,
            account=account.pk,
            tradingsymbol="AAPL",
            exchange="NASDAQ",
            quantity=1,
            order_type="LIMIT",
            price="1.00",
            validity="GTC",
        )
        assert placed.status_code == 201, placed.json()
        order = Order.objects.get(pk=placed.json()["id"])
        first_broker_id = order.broker_order_id
        assert first_broker_id

        replaced = alice_client.patch(f"/api/accounts/{account.pk}/orders/{order.pk}", {"price": "2.00"}, format="json")
        assert replaced.status_code == 200, replaced.json()
        order.refresh_from_db()
        assert order.broker_order_id and order.broker_order_id != first_broker_id
        assert order.price == Decimal("2.00")

        cancelled = alice_client.delete(f"/api/accounts/{account.pk}/orders/{order.pk}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
        assert Order.objects.filter(account=account).count() == 1

    @pytest.mark.parametrize(
        "terms",
        [
            {"order_type": "MARKET"},
            {"order_type": "SL-M", "transaction_type": "SELL", "trigger_price": "1.00"},
            {"order_type": "SL", "transaction_type": "SELL", "trigger_price": "1.00", "price": "0.99"},
        ],
    )
    def test_market_and_stop_orders_reach_schwab(self, alice_client, linked, terms):
        account = accounts_of(linked)["MARGIN"]

        response = place(alice_client, account=account.pk, tradingsymbol="AAPL", exchange="NASDAQ", quantity=1, **terms)

        assert response.status_code == 201, response.json()
        assert response.json()["broker_order_id"]

    def test_unified_reads_of_a_schwab_account(self, alice_client, linked):
        account = accounts_of(linked)["CASH"]
        for what in ("positions", "holdings", "funds"):
            response = alice_client.get(f"/api/accounts/{account.pk}/{what}")
            assert response.status_code == 200, (what, response.json())
        assert response.json()["data"]["currency"] == "USD"

    def test_gtc_is_refused_on_indian_exchanges(self, alice_client):
        response = place(alice_client, validity="GTC")

        assert response.status_code == 400 and "validity" in response.json()["errors"]
