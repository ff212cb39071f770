"""A US paper account fills and is valued at Schwab quotes through the tenant's Schwab market-data connection (its
own login on its shared Schwab app), as in production and, against the broker sandbox's Schwab, in `make run`:
one code path. Schwab failing with no last good quote is a clear 503 and nothing is stored."""

from decimal import Decimal

import pytest
import requests

from accounts.models import Order
from accounts.services import trading_account_create_paper
from accounts.tests.conftest import place
from brokers.models import BrokerConnection
from brokers.tests.schwab_link_steps import schwab_fault, schwab_market_data_link
from market.loading import instruments_load
from market.models import Instrument
from market.quotes import SCHWAB_FEED
from market.sources import us_seed_rows

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


@pytest.fixture
def usd_account(schwab_sandbox, tenant, alice, settings):
    """Alice's USD paper account, the US seed in the master, and tenant acme's Schwab market-data connection."""
    settings.THOR_PAPER_PRICE_SOURCE = "kite"  # the quote service (Kite's for India, Schwab's for the US)
    instruments_load(rows=us_seed_rows(), source=Instrument.Source.SCHWAB, complete=False)
    schwab_market_data_link(schwab_sandbox, tenant)
    return trading_account_create_paper(user=alice, currency="USD")


@pytest.fixture
def us_prices(schwab_sandbox, usd_account, time_passes):
    """Pins AAPL's price at the sandbox's Schwab; the next read quotes it (the last quote's fresh period is let
    pass)."""

    def pin(price):
        requests.post(
            f"{schwab_sandbox.url}/_sandbox/prices", json={"NASDAQ:AAPL": price}, timeout=5
        ).raise_for_status()
        time_passes(SCHWAB_FEED.fresh_seconds)

    return pin


def buy_aapl(client, account, **overrides):
    return place(client, account=account.pk, tradingsymbol="AAPL", exchange="NASDAQ", quantity=2, **overrides)


def test_a_us_market_order_fills_at_the_schwab_quote(alice_client, usd_account, us_prices, schwab_sandbox):
    us_prices(190.25)

    response = buy_aapl(alice_client, usd_account)

    assert response.status_code == 201, response.json()
    assert (response.json()["status"], Decimal(response.json()["average_price"])) == ("COMPLETE", Decimal("190.25"))


def test_us_positions_are_valued_at_the_schwab_quote(alice_client, usd_account, us_prices):
    us_prices(190.0)
    buy_aapl(alice_client, usd_account)
    us_prices(195.5)

    response = alice_client.get(f"/api/accounts/{usd_account.pk}/positions")

    position = response.json()["data"][0]
    assert (Decimal(position["last_price"]), Decimal(position["unrealised_pnl"])) == (Decimal("195.5"), Decimal("11"))


class TestSchwabDown:
    def test_a_us_market_order_is_a_clear_503_and_nothing_is_stored(self, alice_client, usd_account, schwab_sandbox):
        schwab_fault(schwab_sandbox, kind="5xx", path="/marketdata/v1/quotes")

        response = buy_aapl(alice_client, usd_account)

        assert response.status_code == 503
        assert response.json()["code"] == "market_data_unavailable"
        assert not Order.objects.exists()

    def test_without_a_schwab_connection_a_us_order_is_a_clear_503(self, alice_client, usd_account):
        BrokerConnection.objects.filter(app__kind="schwab").update(status=BrokerConnection.Status.EXPIRED)

        response = buy_aapl(alice_client, usd_account)

        assert response.status_code == 503
        assert response.json()["code"] == "market_data_unavailable"

    def test_positions_show_the_last_good_price_as_stale(
        self, alice_client, usd_account, us_prices, schwab_sandbox, settings, time_passes
    ):
        us_prices(190.0)
        buy_aapl(alice_client, usd_account)
        schwab_fault(schwab_sandbox, kind="5xx", path="/marketdata/v1/quotes")
        us_prices(192.0)
        time_passes(settings.THOR_LIVE_FRESH_SECONDS)

        response = alice_client.get(f"/api/accounts/{usd_account.pk}/positions")

        assert response.json()["source"] == "stale"
        assert Decimal(response.json()["data"][0]["last_price"]) == Decimal("190")
