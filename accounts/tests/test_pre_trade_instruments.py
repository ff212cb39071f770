"""The pre-trade checks read the instrument master: listed contracts only, in lots, on their tick, before
their expiry, within ten slices of the exchange's freeze quantity; an index is priced but never traded."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Order, TradingAccount
from accounts.tests.conftest import place
from market.caches import instruments_flush
from market.models import Instrument
from market.tests.fixtures import (
    EXPIRED_OPTION,
    NIFTY_FREEZE,
    NIFTY_FUTURE,
    NIFTY_INDEX,
    NIFTY_LOT,
    NIFTY_OPTION,
    NIFTY_SLICE,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def rich_alice(alice, instrument_master):
    account = TradingAccount.objects.get(user=alice, is_primary=True)
    account.cash = Decimal("100000000")
    account.save()
    return alice


def place_nfo(client, symbol, **overrides):
    return place(client, tradingsymbol=symbol, exchange="NFO", product="NRML", **overrides)


def errors_of(response) -> dict:
    assert response.status_code == 400, response.json()
    assert not Order.objects.exists()
    return response.json()["errors"]


def test_a_listed_future_is_bought_in_lots(alice_client, rich_alice):
    response = place_nfo(alice_client, NIFTY_FUTURE, quantity=2 * NIFTY_LOT)

    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "COMPLETE"


def test_a_listed_option_is_bought_on_its_tick(alice_client, rich_alice):
    response = place_nfo(alice_client, NIFTY_OPTION, quantity=NIFTY_LOT, order_type="LIMIT", price="180.05")

    assert response.status_code == 201, response.json()


def test_an_option_off_its_tick_is_refused(alice_client, rich_alice):
    errors = errors_of(place_nfo(alice_client, NIFTY_OPTION, quantity=NIFTY_LOT, order_type="LIMIT", price="180.02"))

    assert errors["price"] == ["Must be a multiple of the tick size 0.0500."]


def test_a_part_lot_is_refused_naming_the_lot(alice_client, rich_alice):
    errors = errors_of(place_nfo(alice_client, NIFTY_OPTION, quantity=NIFTY_LOT + 1))

    assert errors["quantity"] == [f"Must be a positive multiple of the lot size {NIFTY_LOT}."]


def test_an_order_above_ten_slices_of_the_freeze_quantity_is_refused_naming_it(alice_client, rich_alice):
    # Up to ten slices are placed for the trader (accounts/tests/test_freeze_slicing.py); more is refused.
    errors = errors_of(place_nfo(alice_client, NIFTY_FUTURE, quantity=10 * NIFTY_SLICE + NIFTY_LOT))

    assert str(NIFTY_FREEZE) in errors["quantity"][0] and "freeze quantity" in errors["quantity"][0]
    assert "10 slices" in errors["quantity"][0]


def test_the_most_whole_lots_within_the_freeze_quantity_are_accepted(alice_client, rich_alice):
    response = place_nfo(alice_client, NIFTY_FUTURE, quantity=NIFTY_SLICE)

    assert response.status_code == 201, response.json()


def test_a_freeze_quantity_that_is_no_whole_number_of_lots_is_refused_as_a_part_lot(alice_client, rich_alice):
    # NIFTY's 1,800 is 27.7 lots of 65: the exchange takes lots only, so Thor never sends it (nor slices it).
    errors = errors_of(place_nfo(alice_client, NIFTY_FUTURE, quantity=NIFTY_FREEZE))

    assert errors["quantity"] == [f"Must be a positive multiple of the lot size {NIFTY_LOT}."]


def test_an_expired_contract_is_refused_saying_so(alice_client, rich_alice):
    errors = errors_of(place_nfo(alice_client, EXPIRED_OPTION, quantity=40))

    assert errors["tradingsymbol"] == [f"NFO:{EXPIRED_OPTION} expired on 2018-01-25: it can no longer be traded."]


def test_a_contract_past_its_expiry_is_refused_before_the_next_load_marks_it(alice_client, rich_alice):
    Instrument.objects.filter(tradingsymbol=NIFTY_FUTURE).update(expiry=timezone.localdate() - timedelta(days=1))
    instruments_flush()

    errors = errors_of(place_nfo(alice_client, NIFTY_FUTURE, quantity=NIFTY_LOT))

    assert "expired on" in errors["tradingsymbol"][0]


def test_an_index_is_not_tradable(alice_client, rich_alice):
    errors = errors_of(place(alice_client, tradingsymbol=NIFTY_INDEX, exchange="NSE", quantity=1))

    assert errors["tradingsymbol"] == [f"NSE:{NIFTY_INDEX} is an index: it has a price but cannot be traded."]


def test_an_unlisted_contract_is_unknown(alice_client, rich_alice):
    errors = errors_of(place_nfo(alice_client, "NIFTY99JANFUT", quantity=NIFTY_LOT))

    assert errors["tradingsymbol"] == ["Unknown instrument NFO:NIFTY99JANFUT."]


def test_an_unlisted_equity_trades_on_the_exchange_defaults(alice_client, rich_alice, fixed_prices):
    fixed_prices["NSE:UNLISTEDCO"] = "101.00"

    response = place(alice_client, tradingsymbol="UNLISTEDCO", quantity=3)

    assert response.status_code == 201, response.json()
