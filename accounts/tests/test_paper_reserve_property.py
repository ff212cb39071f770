"""The property of test_paper_reserve: whatever limit, market and stop-market orders are placed against fixed
quotes (thin, missing and hostile books, charges on and off, cash spent down to the last rupees, shorts opened
and bought back), with a matching pass after every step, no fill is refused for funds the check had found, no
order is REJECTED, cash never goes negative and buying power never below zero.

Shorts are opened against the whole book, bids below the mark among them, and with the market slippage on or
off: a short filled below the mark loses the difference at once, marked at the last price, and the check asks
for that loss beforehand (test_paper_reserve_shorts says how), so buying power never goes below zero after it.

The market stream may price an instrument away from its quote: shorts and resting orders are then marked at the
stream's price by the check, by the fills (at placement and in the matching pass) and by the funds alike, while the
fills take the quotes' books.
"""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from accounts.models import Order, TradingAccount
from accounts.orders import order_place
from accounts.paper import paper_orders_match
from accounts.paper_buying_power import paper_buying_power
from accounts.tests.test_paper_funds import stream_prices_set
from accounts.tests.test_paper_valuation import (
    INSTRUMENTS,
    TICK,
    UNPRICED_FAULTS,
    assert_every_fill_at_a_market_price,
    assert_refused_for_the_market,
    primary,
    quoted,
)
from brokers.adapters.types import OrderRequest
from identity.tests.factories import UserFactory

pytestmark = pytest.mark.django_db
D = Decimal


# Each example fixes one quote per instrument (the prices never move); the steps place orders against it, and a
# matching pass after each fills the rests from the book anew, as a newer quote of the same book would. Cash is
# taken out at some steps down to a few rupees of buying power (never below: what the resting orders reserve
# stays covered), as if another order had used the room: before an order (room for its cost at the mark and a
# little more) or before the matching pass.
limit_orders = st.lists(
    st.tuples(
        st.integers(0, len(INSTRUMENTS) - 1),
        st.sampled_from(["BUY", "BUY", "BUY", "SELL"]),
        st.integers(1, 30),  # lots
        st.sampled_from(["LIMIT", "LIMIT", "LIMIT", "MARKET", "SL-M"]),
        st.one_of(st.integers(-40, 40), st.integers(40, 6000)),  # a limit (or a stop's trigger), ticks off the mark
        st.sampled_from(["MIS", "MIS", "CNC"]),  # the cash equity's product (the future's is NRML)
        st.one_of(st.none(), st.tuples(st.sampled_from(["before", "after"]), st.integers(0, 40))),
    ),
    min_size=1,
    max_size=6,
)
quotes = st.tuples(
    *[
        st.tuples(
            st.integers(-200, 200),  # the mark, in ticks from the instrument's
            st.lists(st.tuples(st.integers(-2, 6000), st.integers(-2, 40)), min_size=1, max_size=4),
            st.sampled_from(["book", "book", "book", "no_depth", "thin", "no_quote", "no_price", "no_price_book"]),
        )
        for _ in INSTRUMENTS
    ]
)


def spend_down(account: TradingAccount, *, to: Decimal, marks) -> None:
    """Take cash out until the account's buying power is `to`; none when it is `to` or less already."""
    account.refresh_from_db()
    spare = paper_buying_power(account=account, marks=marks) - to
    if spare > 0:
        account.cash -= spare
        account.save()


# The asks: 10 INFY at the mark (1500), then 40 at 1600. Not a future in sight.
STEP_BOOKS = ((0, [(0, 10), (2000, 40)], "book"), (0, [(0, 1)], "no_quote"))


# The asks: 40 INFY at 1600, over a last price of 1500.
ABOVE_THE_MARK = ((0, [(2000, 40)], "book"), (0, [(0, 1)], "no_quote"))


# The asks: 40 INFY at 1550, over a last price of 1500 (the bids their mirror: 40 at 1450).
ASKS_AT_1550 = ((0, [(1000, 40)], "book"), (0, [(0, 1)], "no_quote"))


def pinned(*, sequence, books, headroom, charges=False, slippage=0, shorts=False, streamed=(None, None)):
    """An example that once failed (or would have), with the draws it does not need at their quiet values."""
    return example(
        sequence=sequence,
        books=books,
        headroom=headroom,
        charges=charges,
        slippage=slippage,
        shorts=shorts,
        streamed=streamed,
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
# A limit buy at 1550 rests under the 1600 ask: valued at the 1500 last price it would reserve more than the room.
@pinned(
    sequence=[(0, "BUY", 30, "LIMIT", 1000, "MIS", None)],
    books=ABOVE_THE_MARK,
    headroom=100,
)
# A limit buy up to 1650 walks the asks past the mark: valued at the mark, it would pass and be refused at fill.
@pinned(
    sequence=[(0, "BUY", 30, "LIMIT", 3000, "MIS", ("before", 0))],
    books=STEP_BOOKS,
    headroom=100,
)
# A limit buy up to the mark fills 10 and rests 5; another order uses all the room but its charges': the
# matching pass fills the rest from the same book.
@pinned(
    sequence=[(0, "BUY", 15, "LIMIT", 0, "MIS", ("after", 0))],
    books=STEP_BOOKS,
    headroom=101,
    charges=True,
)
# 10 sold short into the 1450 bid and the room all used; buying them back walks the asks to 1550: marked at 1550
# by the fill (at 1500 by the check), the short looked dearer to the fill, which refused it.
@pinned(
    sequence=[(0, "SELL", 10, "MARKET", 0, "MIS", ("after", 0)), (0, "BUY", 10, "MARKET", 0, "MIS", None)],
    books=ASKS_AT_1550,
    headroom=100,
    shorts=True,
)
# A stop-market buy triggers at once, takes the one ask (1500.05) and rests its other share at the market; all
# the room is used: its rest fills from the same book at 1500.05, not its trigger, 1500.
@pinned(
    sequence=[(0, "BUY", 2, "SL-M", 0, "MIS", ("after", 0))],
    books=((0, [(1, 1)], "book"), (0, [(0, 0)], "book")),
    headroom=101,
)
# 10 sold short into the 1495 bid with room for their margin at the mark, 3,750, alone: the fill loses 50 at once.
@pinned(
    sequence=[(0, "SELL", 10, "MARKET", 0, "MIS", None)],
    books=((0, [(100, 40)], "book"), (0, [(0, 1)], "no_quote")),
    headroom=25,
    shorts=True,
)
# A future sold short at a limit below its mark rests (its book has not one lot for it), reserving its margin at the
# mark and its loss; room is then spent down for an INFY buy: its check must see the future's mark to see that.
@pinned(
    sequence=[
        (0, "BUY", 1, "LIMIT", 0, "MIS", None),
        (1, "SELL", 1, "LIMIT", -34, "MIS", None),
        (0, "BUY", 1, "LIMIT", 921, "MIS", ("before", 0)),
    ],
    books=((0, [(61, 1)], "book"), (0, [(0, 1)], "book")),
    headroom=30,
    shorts=True,
)
# A stop-market short triggers at once, sells 2 into the thin book's 1484.90 bid and rests 21 at the market; room is
# spent down to nothing after a last order; the matching pass sells 2 more at 1484.90, losing 15.10 each below the
# mark at once: the rest reserves that loss down to the worst bid its quote shows, not at the last price.
@pinned(
    sequence=[
        (0, "SELL", 23, "SL-M", 0, "MIS", None),
        (0, "SELL", 30, "LIMIT", -2, "MIS", None),
        (0, "BUY", 8, "LIMIT", -29, "MIS", None),
        (0, "BUY", 7, "LIMIT", 0, "CNC", None),
        (0, "SELL", 21, "LIMIT", 0, "MIS", ("after", 0)),
    ],
    books=((0, [(302, 30), (0, 0), (0, 0), (0, 0)], "thin"), (0, [(0, 0)], "book")),
    headroom=30,
    shorts=True,
)
# The future sold short, the stream's price of it 50 ticks under its quote; an INFY buy fills 10 at the mark and rests
# 5, all the room then spent: the matching pass's fill marked the short at the quote (the check at the stream's price),
# found it dearer and refused the rest.
@pinned(
    sequence=[(1, "SELL", 1, "MARKET", 0, "MIS", None), (0, "BUY", 15, "LIMIT", 0, "MIS", ("after", 0))],
    books=(STEP_BOOKS[0], (0, [(0, 4)], "book")),
    headroom=100,
    shorts=True,
    streamed=(None, -50),
)
@given(
    sequence=limit_orders,
    books=quotes,
    headroom=st.integers(30, 130),
    charges=st.booleans(),
    slippage=st.sampled_from([0, 0, 5]),
    shorts=st.booleans(),
    # The market stream's price of each instrument, in ticks from its quote's (None: not streamed).
    streamed=st.tuples(*[st.one_of(st.none(), st.integers(-60, 60)) for _ in INSTRUMENTS]),
)
def test_resting_and_marketable_limit_orders_are_never_refused_at_fill_for_funds_at_unchanged_prices(
    tenant, instrument_master, fixed_prices, settings, sequence, books, headroom, charges, slippage, shorts, streamed
):
    """Limit orders (marketable or resting, partly filled from thin books), market and stop-market orders, with
    charges on or off, on an account with little room to spare: each is refused before anything is written or
    accepted; neither its fill at placement nor a matching pass at the same prices refuses a fill for funds, and
    cash never goes below zero, nor the buying power (what the resting orders reserve stays covered).

    Buys, and sells: of what is held (CNC) or, with `shorts`, of anything on an intraday or futures product,
    opening shorts, into bids above and below the mark, with the market slippage (`slippage`) or without."""
    settings.THOR_PAPER_CHARGES = {"enabled": charges, "tenants": {}}
    settings.THOR_PAPER_SLIPPAGE_BPS = slippage
    account = primary(UserFactory(tenant=tenant))  # a new user each example: order rows are never deleted
    marks, unpriced = {}, set()
    for (exchange, symbol, lot, base), (mark_ticks, asks, fault) in zip(INSTRUMENTS, books, strict=True):
        marks[(exchange, symbol)] = base + mark_ticks * TICK
        quoted(
            f"{exchange}:{symbol}",
            mark=marks[(exchange, symbol)],
            lot=lot,
            asks=asks,
            fault=fault,
            fixed_prices=fixed_prices,
        )
        event(fault)
        if fault in UNPRICED_FAULTS:
            unpriced.add((exchange, symbol))
    # What shorts and resting orders are marked at, as the funds mark them: the stream's price while it is fresh,
    # else the quote's. Fills take the quotes' books either way.
    heard = {
        instrument: (max(marks[instrument] + ticks * TICK, TICK), True)
        for instrument, ticks in zip(marks, streamed, strict=True)
        if ticks is not None
    }
    stream_prices_set(heard)
    quoted_marks = {key: mark for key, mark in marks.items() if key not in unpriced}
    quoted_marks |= {instrument: price for instrument, (price, _) in heard.items()}
    if heard:
        event("streamed")
    # Room for `headroom` percent of all the orders at the marks: some fit, the others meet what they left.
    value = sum(lots * INSTRUMENTS[index][2] * marks[INSTRUMENTS[index][:2]] for index, _, lots, *_ in sequence)
    account.cash = (value * headroom / 100).quantize(D("0.01"))
    account.save()
    for index, side, lots, order_type, ticks, product, tighten in sequence:
        if side == "SELL" and not shorts:
            index, product = 0, "CNC"  # a sell of what is held, if anything is
        exchange, symbol, lot, _ = INSTRUMENTS[index]
        mark = marks[(exchange, symbol)]
        quantity = D(lots * lot)
        if tighten and tighten[0] == "before":
            spend_down(account, to=(quantity * mark * D("1.002")).quantize(D("0.01")) + tighten[1], marks=quoted_marks)
        request = OrderRequest(
            symbol=symbol,
            exchange=exchange,
            side=side,
            quantity=quantity,
            order_type=order_type,
            product=product if exchange == "NSE" else "NRML",
            price=max(mark + ticks * TICK, TICK) if order_type == "LIMIT" else None,
            trigger_price=max(mark + ticks * TICK, TICK) if order_type == "SL-M" else None,
        )
        orders_before = account.orders.count()
        try:
            order = order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)
            event(f"{order_type} {order.status}")
        except ValidationError as error:
            assert_refused_for_the_market(error)
            event("refused before")
            assert account.orders.count() == orders_before
        if tighten and tighten[0] == "after":
            spend_down(account, to=D(tighten[1]), marks=quoted_marks)
        if paper_orders_match(account_id=account.pk):
            event("filled further by a matching pass")
        account.refresh_from_db()
        if account.paper_positions.filter(quantity__lt=0).exists():
            event("short")
        refused_at_fill = account.orders.filter(status_message__contains="Insufficient funds at fill")
        assert not refused_at_fill.exists(), list(refused_at_fill.values("quantity", "status", "status_message"))
        assert account.cash >= 0
        assert_every_fill_at_a_market_price(account)
        # What rests is covered: each resting order can fill at the price it reserves (cash taken out stops at
        # zero buying power, never below).
        assert paper_buying_power(account=account, marks=quoted_marks) >= 0
    assert not Order.objects.filter(account=account, status=Order.Status.REJECTED).exists()
