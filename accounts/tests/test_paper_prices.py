"""Paper fills at Kite quotes through the tenant's market-data connection (its session on its shared Kite app), as
in production and, against the broker sandbox's Kite, in `make run`: one code path."""

from decimal import Decimal

import pytest
import requests

from accounts.models import Order
from accounts.paper import paper_orders_match
from accounts.tests.conftest import place
from brokers.models import BrokerApp, BrokerConnection
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, follow, link, log_in_at_kite
from market.quotes import FRESH_SECONDS

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


@pytest.fixture
def sandbox_prices(sandbox, market_data, time_passes):
    """Pins INFY's price at the sandbox; the next read quotes it (the last quote's fresh period is let pass)."""

    def pin(price):
        requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": price}, timeout=5).raise_for_status()
        time_passes(FRESH_SECONDS)

    return pin


def test_a_market_order_fills_at_the_sandbox_books_best_ask(alice_client, sandbox_prices):
    sandbox_prices(1512.35)  # the sandbox's book: asks a tick apart above the last price, 100 each

    response = place(alice_client)

    assert response.status_code == 201, response.json()
    assert (response.json()["status"], Decimal(response.json()["average_price"])) == ("COMPLETE", Decimal("1512.40"))


def test_a_limit_order_near_the_market_fills_when_the_book_comes_to_it(alice_client, sandbox_prices):
    sandbox_prices(1500.0)
    order_id = place(alice_client, order_type="LIMIT", price="1499.00").json()["id"]
    assert Order.objects.get(pk=order_id).status == "OPEN"

    sandbox_prices(1498.5)
    paper_orders_match()

    order = Order.objects.get(pk=order_id)
    assert (order.status, order.average_price) == ("COMPLETE", Decimal("1498.55"))


def test_positions_are_valued_at_the_sandbox_price(alice_client, sandbox_prices):
    sandbox_prices(1500.0)
    place(alice_client)
    sandbox_prices(1510.0)

    position = alice_client.get("/api/accounts/primary/positions").json()["data"][0]

    # Bought 10 at the best ask, 1500.05.
    assert (Decimal(position["last_price"]), Decimal(position["unrealised_pnl"])) == (Decimal("1510"), Decimal("99.50"))


class TestBrokerDown:
    @pytest.fixture(autouse=True)
    def nothing_listening(self, market_data, settings):
        settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"  # nothing listens on the discard port

    def test_a_market_order_is_a_clear_503_and_nothing_is_stored(self, alice_client):
        response = place(alice_client)

        assert response.status_code == 503
        assert response.json()["code"] == "market_data_unavailable"
        assert not Order.objects.exists()

    def test_resting_orders_wait_for_prices_without_failing_the_matcher(self, alice_client, settings):
        settings.THOR_PAPER_PRICE_SOURCE = "fixed"
        order_id = place(alice_client, order_type="LIMIT", price="1400.00").json()["id"]
        settings.THOR_PAPER_PRICE_SOURCE = "kite"

        assert paper_orders_match() == 0
        assert Order.objects.get(pk=order_id).status == "OPEN"


def link_through_tenant_app(client, tenant, user_id) -> BrokerConnection:
    """The tenant's shared Kite app (the sandbox's), and the client's user linked through it."""
    app, _ = BrokerApp.objects.get_or_create(
        tenant=tenant, owner=None, kind="kite", api_key=API_KEY, defaults={"api_secret": API_SECRET}
    )
    follow(log_in_at_kite(client.post("/api/brokers/kite/connect/", {}, format="json").json()["oauth_url"], user_id))
    return BrokerConnection.objects.get(app=app, broker_user_id=user_id, status="active")


class TestKiteQuotes:
    """Only a session on the tenant's own shared Kite app prices its paper orders: never another tenant's,
    never one on a user's own app (quotes spend that session's rate budget, a token error ends it)."""

    @pytest.fixture(autouse=True)
    def kite_prices(self, sandbox, settings):
        settings.THOR_PAPER_PRICE_SOURCE = "kite"
        requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1512.35}, timeout=5).raise_for_status()

    def test_a_market_order_fills_at_a_quote_through_the_tenants_app(self, alice_client, bob_client, tenant):
        link_through_tenant_app(bob_client, tenant, "CD5678")

        response = place(alice_client)

        assert response.status_code == 201, response.json()
        assert (response.json()["status"], Decimal(response.json()["average_price"])) == (
            "COMPLETE",
            Decimal("1512.40"),  # the best ask of the sandbox's book
        )

    def test_another_tenants_session_is_never_used(self, alice_client, charlie_client, other_tenant, sandbox):
        charlies = link_through_tenant_app(charlie_client, other_tenant, "CD5678")
        calls = sandbox.state.stats.snapshot()["total"]

        response = place(alice_client)

        assert response.status_code == 503 and response.json()["code"] == "market_data_unavailable"
        assert not Order.objects.exists()
        assert sandbox.state.stats.snapshot()["total"] == calls
        assert BrokerConnection.objects.get(pk=charlies.pk).last_sync_at == charlies.last_sync_at

    def test_a_session_on_a_users_own_app_is_never_used(self, alice_client, bob_client, sandbox):
        link(bob_client, user_id="CD5678")
        calls = sandbox.state.stats.snapshot()["total"]

        response = place(alice_client)

        assert response.status_code == 503 and response.json()["code"] == "market_data_unavailable"
        assert not Order.objects.exists()
        assert sandbox.state.stats.snapshot()["total"] == calls

    def test_resting_orders_fill_through_each_tenants_own_session(
        self, alice_client, bob_client, charlie_client, tenant, sandbox, settings, time_passes
    ):
        settings.THOR_PAPER_PRICE_SOURCE = "fixed"
        charlies = place(charlie_client, order_type="LIMIT", price="1499.50").json()["id"]
        settings.THOR_PAPER_PRICE_SOURCE = "kite"
        link_through_tenant_app(bob_client, tenant, "CD5678")
        alices = place(alice_client, order_type="LIMIT", price="1499.50").json()["id"]
        requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1499.0}, timeout=5).raise_for_status()
        time_passes(FRESH_SECONDS)  # a quote is asked again once its fresh period is over

        assert paper_orders_match() == 1

        assert Order.objects.get(pk=alices).status == "COMPLETE"
        assert Order.objects.get(pk=charlies).status == "OPEN"
