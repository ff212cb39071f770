"""A live account's book (accounts.live_pnl), without a socket: the broker's positions moved by ticks from the
broker's own numbers, and what the ticks cannot move left out."""

from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from accounts.live_pnl import live_book_of, position_token
from accounts.pnl import book_tick, position_prices_message
from brokers.adapters.types import Position
from thor.money import CENT, ROUNDING

LEAD = 53496327  # a Kite future: multiplier 1000


def kite_position(**overrides) -> Position:
    fields = dict(
        symbol="LEADMINI17DECFUT",
        exchange="MCX",
        product="NRML",
        quantity=Decimal("1"),
        average_price=Decimal("160.05"),
        last_price=Decimal("161.05"),
        realised_pnl=Decimal("12.50"),
        unrealised_pnl=Decimal("1000.00"),
        day_pnl=Decimal("250.00"),
        value=Decimal("161050.00"),
        instrument_token=LEAD,
        raw={"multiplier": 1000},
    )
    return Position(**{**fields, **overrides})


def no_master(position: Position) -> int | None:
    return position.instrument_token


prices = st.decimals(min_value=Decimal("0.05"), max_value=Decimal("99999"), places=2)


@given(
    quantity=st.integers(min_value=-500, max_value=500).filter(bool),
    multiplier=st.sampled_from([None, 1, 25, 1000, "50", 0.5]),
    ticks=st.lists(prices, min_size=1, max_size=8),
)
def test_after_any_ticks_a_position_is_the_brokers_moved_by_the_last_price_alone(quantity, multiplier, ticks):
    """Path independence: whatever ticks came before, the P&L is the snapshot's plus (last tick - snapshot's
    last price) x quantity x multiplier, rounded half up to the cent as the presenters round; realised P&L and
    the rest stay the broker's."""
    base = kite_position(quantity=Decimal(quantity), raw={} if multiplier is None else {"multiplier": multiplier})
    book = live_book_of(7, [base], token_of=no_master)
    for price in ticks:
        book_tick(book, LEAD, price)
    message = position_prices_message(book, {("MCX", "LEADMINI17DECFUT")}, as_of=timezone.now())

    move = (ticks[-1] - base.last_price) * quantity * Decimal(str(multiplier or 1))
    (shown,) = message["data"]["positions"]
    assert message["data"]["funds"] is None
    assert shown["last_price"] == f"{ticks[-1]:.4f}"
    assert Decimal(shown["unrealised_pnl"]) == (base.unrealised_pnl + move).quantize(CENT, rounding=ROUNDING)
    assert Decimal(shown["day_pnl"]) == (base.day_pnl + move).quantize(CENT, rounding=ROUNDING)
    assert Decimal(shown["value"]) == (base.value + move).quantize(CENT, rounding=ROUNDING)
    assert (shown["realised_pnl"], shown["average_price"], shown["quantity"]) == ("12.50", "160.0500", quantity)


def test_a_tick_at_the_snapshots_own_price_moves_nothing_and_is_not_sent():
    book = live_book_of(7, [kite_position()], token_of=no_master)

    assert book_tick(book, LEAD, Decimal("161.05")) == set()
    assert book_tick(book, LEAD, Decimal("162.05")) == {("MCX", "LEADMINI17DECFUT")}


@pytest.mark.django_db
def test_what_the_ticks_cannot_move_is_left_out_and_the_rest_is_kept():
    hostile = [
        kite_position(symbol="NOTOKEN", instrument_token=None),  # no token, and no master row
        kite_position(symbol="CLOSED", quantity=Decimal("0")),  # a closed position's P&L does not move
        kite_position(symbol="NOAVERAGE", instrument_token=11, average_price=None),  # kept: shown as null
        kite_position(symbol="NAN", instrument_token=12, last_price=Decimal("NaN")),
        kite_position(symbol="BADMULT", instrument_token=13, raw={"multiplier": "lots"}),
        kite_position(symbol="NEGMULT", instrument_token=14, raw={"multiplier": -5}),
        kite_position(symbol="NOPNL", instrument_token=15, unrealised_pnl=None),  # kept: stays null
        kite_position(symbol="BOOL", instrument_token=True),
        kite_position(symbol="TEXT", instrument_token=16, quantity="10"),
        {"tradingsymbol": "INFY", "quantity": 10},  # not a Position at all
        None,
    ]
    book = live_book_of(7, hostile, token_of=position_token)  # the master has none of them

    assert sorted(held.position.symbol for held in book.held) == ["NOAVERAGE", "NOPNL"]
    book_tick(book, 11, Decimal("170"))
    book_tick(book, 15, Decimal("170"))
    message = position_prices_message(book, {("MCX", "NOAVERAGE"), ("MCX", "NOPNL")}, as_of=timezone.now())
    shown = {position["tradingsymbol"]: position for position in message["data"]["positions"]}
    assert shown["NOAVERAGE"]["average_price"] is None
    assert shown["NOAVERAGE"]["unrealised_pnl"] == "9950.00"
    assert shown["NOPNL"]["unrealised_pnl"] is None and shown["NOPNL"]["day_pnl"] == "9200.00"


def test_a_snapshot_that_is_not_a_list_is_an_empty_book():
    for data in ({"net": []}, "positions", 42):
        assert live_book_of(7, data, token_of=no_master).held == []


def test_a_schwab_position_has_its_symbols_us_token():
    from market.us_tokens import us_token

    aapl = kite_position(symbol="AAPL", exchange="", instrument_token=None, raw={})
    option = kite_position(symbol="AAPL  261218C00200000", exchange="", instrument_token=None, raw={})

    assert position_token(aapl) == us_token("AAPL")
    assert position_token(option) is None  # not streamed
