"""The Kite sandbox refuses a LIMIT or SL order outside the instrument's band as Kite does (issue 22): a 400
InputException, before the order is booked, worded as circuit limits even for an option's price protection
range. Driven by the official kiteconnect client."""

import pytest
from kiteconnect import exceptions as kite_exceptions

from brokers.tests import kite_sandbox_calls
from brokers.tests.kite_sandbox_calls import kite_session, pin, place
from market.tests.fixtures import NIFTY_LOT, NIFTY_OPTION

pytestmark = pytest.mark.e2e

# The sandbox's fixtures, by the names pytest finds them under.
postback_receiver = kite_sandbox_calls.postback_receiver
latency_waits = kite_sandbox_calls.latency_waits
sandbox = kite_sandbox_calls.sandbox
fresh_sandbox = kite_sandbox_calls.fresh_sandbox

OPTION = {"exchange": "NFO", "tradingsymbol": NIFTY_OPTION, "quantity": NIFTY_LOT, "product": "NRML"}


def limit(kite, price, **overrides):
    return place(kite, **{"order_type": "LIMIT", "price": price, "market_protection": None, **overrides})


def refusal(kite, price, **overrides) -> str:
    orders_before = len(kite.orders())
    with pytest.raises(kite_exceptions.InputException) as raised:
        limit(kite, price, **overrides)
    assert raised.value.code == 400
    assert len(kite.orders()) == orders_before  # refused before it was booked
    return str(raised.value)


def test_an_equity_above_its_upper_circuit_is_refused_with_kites_message(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:BANDCO": 1000.0})  # listed by the pin: its close is 1000, its circuit 900 to 1100

    message = refusal(kite, 1100.05, tradingsymbol="BANDCO")

    assert message == (
        "Your order price is higher than the current upper circuit limit of 1100.00. "
        "Place an order within the daily range."
    )


def test_an_equity_below_its_lower_circuit_is_refused_and_within_it_placed(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:BANDCO": 1000.0})

    message = refusal(kite, 899.95, tradingsymbol="BANDCO", transaction_type="SELL")

    assert "lower than the current lower circuit limit of 900.00" in message
    assert limit(kite, 900.0, tradingsymbol="BANDCO")


def test_an_option_above_a_premium_of_50_may_move_40_percent(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {f"NFO:{NIFTY_OPTION}": 100.0})

    assert "upper circuit limit of 140.00" in refusal(kite, 140.05, **OPTION)
    assert "lower circuit limit of 60.00" in refusal(kite, 59.95, **OPTION, transaction_type="SELL")
    assert limit(kite, 139.95, **OPTION)


def test_an_option_at_or_below_50_may_move_20(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {f"NFO:{NIFTY_OPTION}": 30.0})

    assert "upper circuit limit of 50.00" in refusal(kite, 50.05, **OPTION)
    assert limit(kite, 50.0, **OPTION)


def test_a_modification_outside_the_band_is_refused(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:BANDCO": 1000.0})
    order_id = limit(kite, 950.0, tradingsymbol="BANDCO")

    with pytest.raises(kite_exceptions.InputException, match=r"lower circuit limit of 900\.00"):
        kite.modify_order(variety="regular", order_id=order_id, price=850.0)


def test_a_market_order_has_no_band(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:BANDCO": 1000.0})

    assert place(kite, tradingsymbol="BANDCO")
