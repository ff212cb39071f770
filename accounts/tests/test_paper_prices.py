"""Paper fills at the broker sandbox's moving prices, as `make run` does in development."""

from decimal import Decimal

import pytest
import requests

from accounts.models import Order
from accounts.paper import paper_orders_match
from accounts.tests.conftest import place

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


@pytest.fixture
def sandbox_prices(sandbox, settings):
    settings.THOR_PAPER_PRICE_SOURCE = "sandbox"

    def pin(price):
        requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": price}, timeout=5).raise_for_status()

    return pin


def test_a_market_order_fills_at_the_sandbox_price(alice_client, sandbox_prices):
    sandbox_prices(1512.35)

    response = place(alice_client)

    assert response.status_code == 201, response.json()
    assert (response.json()["status"], Decimal(response.json()["average_price"])) == ("COMPLETE", Decimal("1512.35"))


def test_a_limit_order_near_the_market_fills_when_the_price_comes_to_it(alice_client, sandbox_prices):
    sandbox_prices(1500.0)
    order_id = place(alice_client, order_type="LIMIT", price="1499.00").json()["id"]
    assert Order.objects.get(pk=order_id).status == "OPEN"

    sandbox_prices(1498.5)
    paper_orders_match()

    order = Order.objects.get(pk=order_id)
    assert (order.status, order.average_price) == ("COMPLETE", Decimal("1498.5"))


def test_positions_are_valued_at_the_sandbox_price(alice_client, sandbox_prices):
    sandbox_prices(1500.0)
    place(alice_client)
    sandbox_prices(1510.0)

    position = alice_client.get("/api/accounts/primary/positions").json()["data"][0]

    assert (Decimal(position["last_price"]), Decimal(position["unrealised_pnl"])) == (Decimal("1510"), Decimal("100"))


class TestSandboxDown:
    @pytest.fixture(autouse=True)
    def nothing_listening(self, settings):
        settings.THOR_PAPER_PRICE_SOURCE = "sandbox"
        settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"

    def test_a_market_order_is_a_clear_503_and_nothing_is_stored(self, alice_client):
        response = place(alice_client)

        assert response.status_code == 503
        assert response.json()["code"] == "market_data_unavailable"
        assert not Order.objects.exists()

    def test_resting_orders_wait_for_prices_without_failing_the_matcher(self, alice_client, settings):
        settings.THOR_PAPER_PRICE_SOURCE = "fixed"
        order_id = place(alice_client, order_type="LIMIT", price="1400.00").json()["id"]
        settings.THOR_PAPER_PRICE_SOURCE = "sandbox"

        assert paper_orders_match() == 0
        assert Order.objects.get(pk=order_id).status == "OPEN"
