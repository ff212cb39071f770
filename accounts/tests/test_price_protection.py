"""Price protection before sending (issue 22): a live LIMIT or SL order outside the instrument's band is a 400
naming the band and its reference price, before any row is written or anything is sent.

Over real HTTP with the sandbox's Kite, which quotes the reference price and circuit limits (and refuses such
orders itself, with Kite's message, when Thor lets one through).
"""

import logging
import time

import pytest
import requests

from accounts import price_bands
from accounts.models import Order
from accounts.tests.conftest import order_body, place
from brokers.tests.sandbox_fixtures import link, market_data_link, sandbox_calls, sandbox_fault
from market import quote_refresh
from market.caches import quotes_lock_key
from market.quotes import LOCK_WAIT_SECONDS, quote_service
from market.tests.fixtures import NIFTY_LOT, NIFTY_OPTION
from thor import coordination
from thor.coordination import OccasionalWarning

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

PLACE, QUOTE = "POST /orders/regular", "GET /quote"
# A symbol the sandbox lists when pinned: its previous close is the pinned price, so its circuit is 900 to 1100.
EQUITY, EQUITY_PRICE = "BANDCO", 1000.0
MARKET_DATA_USER = "CD5678"


def pin(sandbox, prices: dict) -> None:
    requests.post(f"{sandbox.url}/_sandbox/prices", json=prices, timeout=5).raise_for_status()


@pytest.fixture
def live(sandbox, instrument_master, alice_client, tenant):
    """Alice's live Kite account, her tenant quoting through its market-data connection (another Kite user's
    session, as a tenant's own market-data login is); the NIFTY option (CE in the master) at a premium of 100,
    BANDCO at 1000."""
    pin(sandbox, {f"NFO:{NIFTY_OPTION}": 100.0, f"NSE:{EQUITY}": EQUITY_PRICE})
    market_data_link(sandbox, tenant, user_id=MARKET_DATA_USER)
    return link(alice_client)


def option_limit(client, account, price, **overrides):
    return place(
        client,
        account=account.pk,
        exchange="NFO",
        tradingsymbol=NIFTY_OPTION,
        quantity=NIFTY_LOT,
        product="NRML",
        order_type="LIMIT",
        price=price,
        **overrides,
    )


def equity_limit(client, account, price, **overrides):
    return place(
        client, account=account.pk, tradingsymbol=EQUITY, **{"order_type": "LIMIT", "price": price, **overrides}
    )


def price_errors(response) -> str:
    return " ".join(response.json()["errors"]["price"])


class TestOptionsAboveAPremiumOf50:
    def test_41_percent_above_the_reference_is_refused_naming_band_and_reference(self, alice_client, sandbox, live):
        sent = sandbox_calls(sandbox, PLACE)

        refused = option_limit(alice_client, live, "141.00")

        assert refused.status_code == 400, refused.json()
        message = price_errors(refused)
        assert "60.00 to 140.00" in message
        assert "reference price 100" in message
        assert "+/-40%" in message
        assert sandbox_calls(sandbox, PLACE) == sent
        assert not Order.objects.filter(account=live).exists()

    def test_39_percent_above_is_placed(self, alice_client, sandbox, live):
        placed = option_limit(alice_client, live, "139.00")

        assert placed.status_code == 201, placed.json()

    def test_41_percent_below_is_refused_too(self, alice_client, live):
        refused = option_limit(alice_client, live, "59.00", transaction_type="SELL")

        assert refused.status_code == 400
        assert "60.00 to 140.00" in price_errors(refused)


class TestOptionsAtOrBelowAPremiumOf50:
    def test_21_above_is_refused_and_19_above_placed(self, alice_client, sandbox, live):
        pin(sandbox, {f"NFO:{NIFTY_OPTION}": 30.0})

        refused = option_limit(alice_client, live, "51.00")
        placed = option_limit(alice_client, live, "49.00")

        assert refused.status_code == 400
        assert "10.00 to 50.00" in price_errors(refused)
        assert "+/-20 of the reference price" in price_errors(refused)
        assert placed.status_code == 201, placed.json()


class TestEquitiesAgainstTheCircuit:
    def test_above_the_upper_circuit_is_refused_naming_the_circuit(self, alice_client, sandbox, live):
        sent = sandbox_calls(sandbox, PLACE)

        refused = equity_limit(alice_client, live, "1100.05")

        assert refused.status_code == 400
        assert "900.00 to 1100.00" in price_errors(refused)
        assert "circuit limits" in price_errors(refused)
        assert sandbox_calls(sandbox, PLACE) == sent

    def test_a_stop_limit_trigger_below_the_lower_circuit_is_refused(self, alice_client, live):
        refused = equity_limit(
            alice_client, live, "950.00", order_type="SL", trigger_price="899.95", transaction_type="SELL"
        )

        assert refused.status_code == 400
        assert "900.00 to 1100.00" in " ".join(refused.json()["errors"]["trigger_price"])

    def test_within_the_circuit_is_placed(self, alice_client, live):
        assert equity_limit(alice_client, live, "1099.95").status_code == 201


class TestModifications:
    def test_a_modification_outside_the_band_is_refused_before_it_is_sent(self, alice_client, sandbox, live):
        order_id = equity_limit(alice_client, live, "950.00").json()["id"]
        broker_order = sandbox.state.kite.accounts["AB1234"].orders[Order.objects.get(pk=order_id).broker_order_id]

        refused = alice_client.patch(f"/api/accounts/{live.pk}/orders/{order_id}", {"price": "850.00"}, format="json")
        history_after_refusal = len(broker_order.history)
        moved = alice_client.patch(f"/api/accounts/{live.pk}/orders/{order_id}", {"price": "960.00"}, format="json")

        assert refused.status_code == 400
        assert "900.00 to 1100.00" in price_errors(refused)
        assert history_after_refusal == 4  # received, validation pending, open pending, open: never modified
        assert moved.status_code == 200, moved.json()
        assert Order.objects.get(pk=order_id).price == 960


class TestBatches:
    def test_a_leg_outside_its_band_refuses_the_batch_before_any_leg_is_sent(self, alice_client, sandbox, live):
        sent = sandbox_calls(sandbox, PLACE)
        legs = [
            order_body(tradingsymbol=EQUITY, order_type="LIMIT", price="1000.00"),
            order_body(tradingsymbol=EQUITY, order_type="LIMIT", price="1100.05"),
        ]

        refused = alice_client.post(f"/api/accounts/{live.pk}/batch-orders", {"orders": legs}, format="json")

        assert refused.status_code == 400
        assert "900.00 to 1100.00" in " ".join(refused.json()["errors"]["orders.1.price"])
        assert sandbox_calls(sandbox, PLACE) == sent
        assert not Order.objects.filter(account=live).exists()

    def test_legs_on_two_instruments_cost_one_quote(self, alice_client, sandbox, live):
        quotes = sandbox_calls(sandbox, QUOTE)
        legs = [
            order_body(tradingsymbol=EQUITY, order_type="LIMIT", price="1000.00"),
            order_body(
                exchange="NFO",
                tradingsymbol=NIFTY_OPTION,
                quantity=NIFTY_LOT,
                product="NRML",
                order_type="LIMIT",
                price="141.00",
            ),
        ]

        refused = alice_client.post(f"/api/accounts/{live.pk}/batch-orders", {"orders": legs}, format="json")

        assert refused.status_code == 400
        assert "60.00 to 140.00" in " ".join(refused.json()["errors"]["orders.1.price"])
        assert sandbox_calls(sandbox, QUOTE) == quotes + 1


class TestTenantOverride:
    def test_a_wider_option_band_lets_the_order_go_to_the_broker(self, alice_client, sandbox, live, settings):
        settings.THOR_PRICE_BANDS = {
            "default": settings.THOR_PRICE_BANDS["default"],
            "tenants": {live.user.tenant.slug: {"option_percent": "60"}},
        }
        sent = sandbox_calls(sandbox, PLACE)

        answered = option_limit(alice_client, live, "141.00")

        # Thor's band is now 40 to 160; the exchange's is not, and the broker says so in Kite's words.
        assert sandbox_calls(sandbox, PLACE) == sent + 1
        assert answered.status_code in (400, 422), answered.json()
        assert "upper circuit limit of 140.00" in str(answered.json())


class TestQuoteCost:
    def test_a_market_order_never_asks_for_a_quote(self, alice_client, sandbox, live):
        quotes = sandbox_calls(sandbox, QUOTE)

        placed = place(alice_client, account=live.pk, tradingsymbol=EQUITY)

        assert placed.status_code == 201, placed.json()
        assert sandbox_calls(sandbox, QUOTE) == quotes

    def test_a_limit_order_asks_once(self, alice_client, sandbox, live):
        quotes = sandbox_calls(sandbox, QUOTE)

        assert equity_limit(alice_client, live, "1000.00").status_code == 201
        assert sandbox_calls(sandbox, QUOTE) == quotes + 1

    def test_a_ladder_of_orders_on_one_instrument_asks_once(self, alice_client, sandbox, live):
        quotes = sandbox_calls(sandbox, QUOTE)

        for price in ("990.00", "980.00", "970.00"):
            assert equity_limit(alice_client, live, price).status_code == 201
        assert sandbox_calls(sandbox, QUOTE) == quotes + 1

    def test_orders_on_many_instruments_never_wait_for_kites_quote_budget(self, alice_client, sandbox, live):
        # One quote a second per app: waiting for it would hold each of these orders about a second.
        symbols = [f"BAND{index}" for index in range(4)]
        pin(sandbox, dict.fromkeys((f"NSE:{symbol}" for symbol in symbols), EQUITY_PRICE))
        started = time.monotonic()

        for symbol in symbols:
            placed = place(alice_client, account=live.pk, tradingsymbol=symbol, order_type="LIMIT", price="990.00")
            assert placed.status_code == 201, placed.json()

        assert time.monotonic() - started < 2.0

    def test_without_a_quote_the_order_is_let_through_to_the_exchange(self, alice_client, sandbox, live):
        sandbox_fault(sandbox, kind="5xx", path="/quote", count=5)

        placed = equity_limit(alice_client, live, "1050.00")

        assert placed.status_code == 201, placed.json()


class TestTheReferencesAge:
    """The reference is the quote service's, no older than THOR_PRICE_BAND_QUOTE_SECONDS by its `as_of`."""

    def test_a_quote_within_the_window_serves_the_next_order_past_the_services_fresh_period(
        self, alice_client, sandbox, live, time_passes, settings
    ):
        equity_limit(alice_client, live, "1000.00")
        quotes = sandbox_calls(sandbox, QUOTE)

        time_passes(settings.THOR_PRICE_BAND_QUOTE_SECONDS - 0.5)  # past FRESH_SECONDS: the service calls it stale
        pin(sandbox, {f"NSE:{EQUITY}": 2000.0})  # a call made for this order would set 1800 to 2200
        refused = equity_limit(alice_client, live, "1100.05")

        assert refused.status_code == 400
        assert "900.00 to 1100.00" in price_errors(refused)
        assert quote_refresh.refresh_wait()
        assert sandbox_calls(sandbox, QUOTE) <= quotes + 1

    @pytest.mark.django_db(transaction=True)  # the refresh runs on its own thread, with its own connection
    def test_an_active_traders_next_order_finds_the_quote_refreshed_behind_the_last_one(
        self, alice_client, sandbox, live, time_passes, settings
    ):
        equity_limit(alice_client, live, "1000.00")
        time_passes(settings.THOR_PRICE_BAND_QUOTE_SECONDS - 0.5)
        pin(sandbox, {f"NSE:{EQUITY}": 2000.0})
        assert equity_limit(alice_client, live, "1000.00").status_code == 201  # served the kept quote at once
        assert quote_refresh.refresh_wait()
        quotes = sandbox_calls(sandbox, QUOTE)

        # The first quote is now too old to serve; the refreshed one, 0.5 s and the real time since, is not.
        time_passes(0.5)
        refused = equity_limit(alice_client, live, "2200.05")

        assert refused.status_code == 400
        assert "reference price 2000.0," in price_errors(refused)
        assert sandbox_calls(sandbox, QUOTE) == quotes

    def test_an_older_last_good_quote_is_no_reference_the_order_goes_to_the_exchange(
        self, alice_client, sandbox, live, time_passes, settings, caplog
    ):
        equity_limit(alice_client, live, "1000.00")  # BANDCO quoted at 1000: circuit 900 to 1100
        time_passes(settings.THOR_PRICE_BAND_QUOTE_SECONDS + 1)
        pin(sandbox, {f"NSE:{EQUITY}": 2000.0})  # now 1800 to 2200 at the exchange
        sandbox_fault(sandbox, kind="5xx", path="/quote", count=5)  # the service hands out the old quote, stale

        with caplog.at_level(logging.DEBUG, logger="accounts.price_bands"):
            placed = equity_limit(alice_client, live, "1950.00")

        assert placed.status_code == 201, placed.json()
        assert f"NSE:{EQUITY}" in caplog.text and "too old" in caplog.text


class TestLetThroughUnchecked:
    """Without a good reference in time the order goes on and the exchange judges it (logged): a failing quote
    endpoint must not stop trading, nor hold an order up."""

    @pytest.fixture
    def unquoted(self, sandbox, instrument_master, alice_client):
        """Alice's live account; her tenant has no market-data connection (her own session is never asked)."""
        pin(sandbox, {f"NSE:{EQUITY}": EQUITY_PRICE})
        return link(alice_client)

    def test_a_tenant_without_a_market_data_connection_leaves_the_band_to_the_exchange(
        self, alice_client, sandbox, unquoted, caplog
    ):
        quotes, sent = sandbox_calls(sandbox, QUOTE), sandbox_calls(sandbox, PLACE)

        with caplog.at_level(logging.DEBUG, logger="accounts.price_bands"):
            answered = equity_limit(alice_client, unquoted, "1100.05")

        assert sandbox_calls(sandbox, QUOTE) == quotes
        assert sandbox_calls(sandbox, PLACE) == sent + 1
        assert "upper circuit limit of 1100.00" in str(answered.json())  # the exchange's refusal, in Kite's words
        assert "Price bands not checked" in caplog.text
        assert equity_limit(alice_client, unquoted, "1000.00").status_code == 201

    def test_another_tenants_market_data_connection_never_quotes_this_tenants_orders(
        self, alice_client, sandbox, unquoted, other_tenant
    ):
        market_data_link(sandbox, other_tenant, user_id=MARKET_DATA_USER)
        quotes = sandbox_calls(sandbox, QUOTE)

        answered = equity_limit(alice_client, unquoted, "1100.05")

        assert sandbox_calls(sandbox, QUOTE) == quotes
        assert "upper circuit limit of 1100.00" in str(answered.json())  # Kite's refusal: Thor did not check it

    def test_unchecked_orders_warn_once_a_minute_each_order_at_debug(
        self, alice_client, sandbox, unquoted, caplog, monkeypatch
    ):
        monkeypatch.setattr(price_bands, "_unchecked_warning", OccasionalWarning(price_bands.logger))

        with caplog.at_level(logging.DEBUG, logger="accounts.price_bands"):
            for price in ("1000.00", "999.00", "998.00"):
                assert equity_limit(alice_client, unquoted, price).status_code == 201

        unchecked = [record for record in caplog.records if "Price bands not checked" in record.getMessage()]
        assert [record.levelno for record in unchecked] == [logging.WARNING, logging.DEBUG, logging.DEBUG]

    def test_a_quote_lock_held_elsewhere_holds_the_placement_only_the_short_wait(
        self, alice_client, sandbox, live, tenant, caplog
    ):
        # Another reader's call for the tenant's quotes is stuck (a slow broker): it holds the single-flight lock.
        lock = quotes_lock_key(quote_service(tenant=tenant).services["kite"].scope)
        quotes = sandbox_calls(sandbox, QUOTE)

        with coordination.single_flight(lock, timeout=60, wait=1) as held:
            started = time.monotonic()
            with caplog.at_level(logging.DEBUG, logger="accounts.price_bands"):
                placed = equity_limit(alice_client, live, "1050.00")
            waited = time.monotonic() - started

        assert held
        assert placed.status_code == 201, placed.json()
        # The short wait, not the service's own (a bound far from both, so a loaded machine cannot fail it).
        assert waited < LOCK_WAIT_SECONDS / 2
        assert sandbox_calls(sandbox, QUOTE) == quotes
        assert "Price bands not checked" in caplog.text

    def test_a_batch_waits_the_short_wait_once_not_once_a_leg(self, alice_client, sandbox, live, tenant):
        lock = quote_service(tenant=tenant).services["kite"].scope
        legs = [
            order_body(tradingsymbol=EQUITY, order_type="LIMIT", price=price)
            for price in ("990.00", "980.00", "970.00")
        ]

        with coordination.single_flight(quotes_lock_key(lock), timeout=60, wait=1):
            started = time.monotonic()
            placed = alice_client.post(f"/api/accounts/{live.pk}/batch-orders", {"orders": legs}, format="json")
            waited = time.monotonic() - started

        assert placed.status_code in (200, 201), placed.json()
        assert waited < LOCK_WAIT_SECONDS / 2


class TestHostileInput:
    @pytest.mark.parametrize("price", ["-10.00", "1000000000000", "NaN", "1e12"])
    def test_a_clean_400_before_any_quote(self, alice_client, sandbox, live, price):
        quotes = sandbox_calls(sandbox, QUOTE)

        refused = equity_limit(alice_client, live, price)

        assert refused.status_code == 400
        assert "price" in refused.json()["errors"]
        assert sandbox_calls(sandbox, QUOTE) == quotes

    @pytest.mark.parametrize(
        "symbol", ["BANDCO&i=NSE:SBIN", "BANDCO\r\nX-Evil: 1", "../../_sandbox/faults", "BANDCO:NFO", "A" * 65]
    )
    def test_a_symbol_that_is_no_quote_name_is_never_asked_for(self, alice_client, sandbox, live, symbol):
        quotes = sandbox_calls(sandbox, QUOTE)

        answered = place(alice_client, account=live.pk, tradingsymbol=symbol, order_type="LIMIT", price="1000.00")

        # Left unchecked, it goes on to the broker, which knows no such instrument (or the serializer refuses it).
        assert answered.status_code == 400, answered.json()
        assert sandbox_calls(sandbox, QUOTE) == quotes
