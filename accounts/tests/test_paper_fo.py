"""Paper F&O end to end: the current NIFTY future and an option bought in lots, MIS positions squared off at
their exchange's square-off time, futures and options settled at expiry (time frozen with time-machine)."""

from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError

from accounts import charges
from accounts.checks import order_request_check
from accounts.models import Order, OrderEvent, TradingAccount
from accounts.paper_closing import expired_positions_settle, mis_positions_square_off
from accounts.tasks import settle_expired_paper_positions, square_off_paper_positions
from accounts.tests.conftest import place
from brokers.adapters.types import OrderRequest
from conftest import client_for
from market.models import Instrument
from market.tests.fixtures import NIFTY_FUTURE, NIFTY_LOT, NIFTY_OPTION

pytestmark = pytest.mark.django_db
IST = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")
D = Decimal


def ist(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=IST)


def today_ist() -> date:
    """Today in IST: the fixtures list their contracts from today, expiring next month."""
    return datetime.now(IST).date()


@contextmanager
def trading_at(moment: datetime, user):
    """Time frozen at `moment`, with a client signed in then (a token from the real now may have expired)."""
    with time_machine.travel(moment, tick=False):
        yield client_for(user)


@pytest.fixture
def account(alice, instrument_master):
    account = TradingAccount.objects.get(user=alice, is_primary=True)
    account.cash = D("10000000.00")
    account.save()
    return account


def nfo(client, symbol, **overrides):
    return place(client, tradingsymbol=symbol, exchange="NFO", **({"product": "NRML"} | overrides))


def position(account, symbol, product="NRML"):
    return account.paper_positions.get(symbol=symbol, product=product)


def closing_orders(account, tag):
    return list(account.orders.filter(tag=tag).order_by("id"))


class TestSquareOff:
    def test_mis_positions_close_at_each_exchanges_square_off_time_once(self, alice, account, fixed_prices):
        day = today_ist()
        with trading_at(ist(day, 10), alice) as alice_client:
            future = nfo(alice_client, NIFTY_FUTURE, quantity=2 * NIFTY_LOT, product="MIS")
            equity = place(alice_client, quantity=10, product="MIS", transaction_type="SELL")
            held = place(alice_client, tradingsymbol="SBIN", quantity=5, product="CNC")
            resting = place(
                alice_client, tradingsymbol="SBIN", quantity=5, product="MIS", order_type="LIMIT", price="700.00"
            )
        assert {r.status_code for r in (future, equity, held, resting)} == {201}
        fixed_prices[f"NFO:{NIFTY_FUTURE}"] = "24100.00"
        fixed_prices["NSE:INFY"] = "1490.00"

        with time_machine.travel(ist(day, 15, 19), tick=False):
            assert mis_positions_square_off() == 0
        with time_machine.travel(ist(day, 15, 21), tick=False):
            assert mis_positions_square_off() == 1  # NSE's 15:20 has passed, NFO's 15:25 not yet
        with time_machine.travel(ist(day, 15, 26), tick=False):
            assert square_off_paper_positions.apply().get() == 1
            assert mis_positions_square_off() == 0  # run twice: nothing more

        short = position(account, "INFY", "MIS")
        assert short.quantity == 0 and short.realised_pnl == D("100.00")  # sold 10 at 1500, bought at 1490
        long = position(account, NIFTY_FUTURE, "MIS")
        assert long.quantity == 0 and long.realised_pnl == D("13000.00")  # 130 x 100
        assert position(account, "SBIN", "CNC").quantity == 5  # delivery is not squared off
        assert Order.objects.get(pk=resting.json()["id"]).status == "CANCELLED"
        closes = closing_orders(account, "squareoff")
        assert [(o.symbol, o.side, o.quantity, o.average_price, o.status) for o in closes] == [
            ("INFY", "BUY", 10, D("1490.00"), "COMPLETE"),
            (NIFTY_FUTURE, "SELL", 2 * NIFTY_LOT, D("24100.00"), "COMPLETE"),
        ]
        for order in closes:
            assert list(order.events.values_list("kind", flat=True)) == ["placed", "squared_off"]
            assert "square-off" in order.status_message
        account.refresh_from_db()
        assert account.cash == D("10000000.00") + D("100.00") + D("13000.00") - D("4000.00")  # SBIN 5 x 800 held

    def test_a_position_missed_by_yesterdays_pass_is_closed_before_todays_cut(self, alice, account):
        day = today_ist()
        with trading_at(ist(day, 10) - timedelta(days=1), alice) as alice_client:
            place(alice_client, quantity=10, product="MIS")
        with time_machine.travel(ist(day, 9, 30), tick=False):
            assert mis_positions_square_off() == 1

    def test_the_square_off_pays_the_auto_square_off_charge_and_a_close_by_the_trader_does_not(
        self, alice, account, settings
    ):
        settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}
        day = today_ist()
        with trading_at(ist(day, 10), alice) as alice_client:
            place(alice_client, quantity=10, product="MIS")
            place(alice_client, tradingsymbol="SBIN", quantity=10, product="MIS")
            closed = place(alice_client, tradingsymbol="SBIN", quantity=10, product="MIS", transaction_type="SELL")
        with time_machine.travel(ist(day, 15, 21), tick=False):
            assert mis_positions_square_off() == 1

        (squared,) = closing_orders(account, "squareoff")
        filled = squared.events.get(kind="squared_off").broker_response["charges"]
        assert filled["auto_square_off"] == "50.00"
        trader_close = OrderEvent.objects.get(order_id=closed.json()["id"], kind="filled").broker_response["charges"]
        assert "auto_square_off" not in trader_close

    def test_a_position_opened_today_waits_for_todays_cut(self, alice, account):
        day = today_ist()
        with trading_at(ist(day, 9, 30), alice) as alice_client:
            place(alice_client, quantity=10, product="MIS")
            assert mis_positions_square_off() == 0

    def test_us_equities_square_off_at_new_york_time(self, alice, alice_client, fixed_prices):
        response = alice_client.post("/api/accounts", {"mode": "paper", "currency": "USD"}, format="json")
        assert response.status_code == 201, response.json()
        us = response.json()["id"]
        day = today_ist()
        at = datetime.combine(day, time(11), tzinfo=NEW_YORK)
        with trading_at(at, alice) as alice_client:
            bought = place(alice_client, account=us, tradingsymbol="AAPL", exchange="NASDAQ", quantity=3, product="MIS")
            assert bought.status_code == 201, bought.json()
        with time_machine.travel(at.replace(hour=15, minute=49), tick=False):
            assert mis_positions_square_off() == 0
        with time_machine.travel(at.replace(hour=15, minute=51), tick=False):
            assert mis_positions_square_off() == 1

    def test_a_close_without_a_price_waits_for_the_next_pass(self, alice, account, fixed_prices):
        day = today_ist()
        with trading_at(ist(day, 10), alice) as alice_client:
            place(alice_client, quantity=10, product="MIS")
        del fixed_prices["NSE:INFY"]
        with time_machine.travel(ist(day, 15, 21), tick=False):
            assert mis_positions_square_off() == 0
        fixed_prices["NSE:INFY"] = "1500.00"
        with time_machine.travel(ist(day, 15, 22), tick=False):
            assert mis_positions_square_off() == 1


class TestExpirySettlement:
    def expiry(self) -> date:
        return Instrument.objects.get(exchange="NFO", tradingsymbol=NIFTY_FUTURE).expiry

    def test_futures_and_options_settle_at_the_index_after_the_expiry_close(self, alice_client, account, fixed_prices):
        bought = nfo(alice_client, NIFTY_FUTURE, quantity=NIFTY_LOT)
        call = nfo(alice_client, NIFTY_OPTION, quantity=2 * NIFTY_LOT)
        assert bought.status_code == call.status_code == 201, (bought.json(), call.json())
        assert position(account, NIFTY_FUTURE).quantity == NIFTY_LOT
        fixed_prices["NSE:NIFTY 50"] = "24612.35"
        expiry = self.expiry()

        with time_machine.travel(ist(expiry, 15, 29), tick=False):
            assert expired_positions_settle() == 0  # still trading
        with time_machine.travel(ist(expiry, 15, 35), tick=False):
            assert settle_expired_paper_positions.apply().get() == 2
            assert expired_positions_settle() == 0
            late = OrderRequest(
                symbol=NIFTY_FUTURE,
                exchange="NFO",
                side="BUY",
                quantity=D(NIFTY_LOT),
                order_type="MARKET",
                product="NRML",
            )
            with pytest.raises(ValidationError, match="expired on"):
                order_request_check(request=late)

        future, option = position(account, NIFTY_FUTURE), position(account, NIFTY_OPTION)
        assert future.quantity == option.quantity == 0
        assert future.realised_pnl == D("39802.75")  # 65 x (24,612.35 - 24,000)
        assert option.realised_pnl == D("-8794.50")  # 130 x (112.35 - 180): the intrinsic value of 24500 CE
        settled = closing_orders(account, "expiry")
        assert {(o.symbol, o.average_price) for o in settled} == {
            (NIFTY_FUTURE, D("24612.35")),
            (NIFTY_OPTION, D("112.35")),
        }
        assert all(o.status == "COMPLETE" and "Settled at expiry" in o.status_message for o in settled)
        assert OrderEvent.objects.filter(kind="settled", account=account).count() == 2

    def test_an_option_out_of_the_money_expires_worthless_and_a_short_keeps_its_premium(
        self, alice_client, account, fixed_prices
    ):
        sold = nfo(alice_client, NIFTY_OPTION, quantity=NIFTY_LOT, transaction_type="SELL")
        assert sold.status_code == 201, sold.json()
        fixed_prices["NSE:NIFTY 50"] = "24400.00"

        with time_machine.travel(ist(self.expiry(), 16), tick=False):
            assert expired_positions_settle() == 1

        option = position(account, NIFTY_OPTION)
        assert option.quantity == 0 and option.realised_pnl == D("11700.00")  # 65 x 180 kept

    def test_an_expiry_without_the_underlyings_price_waits(self, alice_client, account, fixed_prices):
        nfo(alice_client, NIFTY_FUTURE, quantity=NIFTY_LOT)
        with time_machine.travel(ist(self.expiry(), 16), tick=False):
            assert expired_positions_settle() == 0
        assert position(account, NIFTY_FUTURE).quantity == NIFTY_LOT

    def test_settlement_charges_only_the_exercise_stt(self, alice_client, account, fixed_prices, settings):
        nfo(alice_client, NIFTY_OPTION, quantity=NIFTY_LOT)
        settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}
        fixed_prices["NSE:NIFTY 50"] = "24600.00"

        with time_machine.travel(ist(self.expiry(), 16), tick=False):
            expired_positions_settle()

        settled = closing_orders(account, "expiry")[0]
        assert settled.charges == D("9.75")  # 0.15% of 65 x 100, the rate on its expiry day

    def test_a_settlement_run_days_late_pays_the_rates_of_the_expiry_day(
        self, alice_client, account, fixed_prices, settings, monkeypatch
    ):
        nfo(alice_client, NIFTY_OPTION, quantity=NIFTY_LOT)
        settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}
        fixed_prices["NSE:NIFTY 50"] = "24600.00"
        expiry = self.expiry()
        # A change by law the day after the expiry: the settlement, run three days later, is not due at it.
        monkeypatch.setattr(
            charges,
            "INR_REVISIONS",
            (*charges.INR_REVISIONS, (expiry + timedelta(days=1), {"options": {"stt_exercise": "0.002"}})),
        )

        with time_machine.travel(ist(expiry + timedelta(days=3), 10), tick=False):
            assert expired_positions_settle() == 1

        assert closing_orders(account, "expiry")[0].charges == D("9.75")  # 0.15%, not 0.2% (13.00)
