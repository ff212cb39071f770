"""Properties of paper F&O money, with faults: a fill moves cash plus positions at market by exactly its
charges (a refused, unpriced or crashed fill by nothing), and by its price's difference from the market when it
fills from the book's depth, partly or across levels; and after the settlement task every position in an
expired contract is closed, its P&L realised."""

import contextlib
from datetime import datetime, time, timedelta
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db.models import Sum
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounts.models import OrderEvent, TradingAccount
from accounts.orders import order_place
from accounts.paper import paper_orders_match
from accounts.paper_closing import mis_positions_square_off, square_off_at
from accounts.tasks import settle_expired_paper_positions
from accounts.tests.test_paper_valuation import assert_refused_for_the_market
from brokers.adapters.types import OrderRequest
from identity.tests.factories import UserFactory
from market.models import Instrument
from market.tests.fixtures import GOLD_FUTURE, GOLD_MULTIPLIER, NIFTY_FUTURE, NIFTY_LOT, NIFTY_OPTION

pytestmark = pytest.mark.django_db
D = Decimal
IST = ZoneInfo("Asia/Kolkata")
START = D("50000000.00")
TICK = D("0.05")
# (exchange, symbol, lot, products, lowest price, tick): a cash equity, the NIFTY future, one of its options, and
# MCX's GOLD future, whose quantity is lots worth GOLD_MULTIPLIER times its price (MULTIPLIERS: the contract's
# terms as the exchange states them, not read from Thor).
INSTRUMENTS = (
    ("NSE", "INFY", 1, ("CNC", "MIS"), D("500"), TICK),
    ("NFO", NIFTY_FUTURE, NIFTY_LOT, ("NRML", "MIS"), D("20000"), TICK),
    ("NFO", NIFTY_OPTION, NIFTY_LOT, ("NRML", "MIS"), TICK, TICK),
    ("MCX", GOLD_FUTURE, 1, ("NRML", "MIS"), D("70000"), D("1")),
)
MULTIPLIERS = {("MCX", GOLD_FUTURE): GOLD_MULTIPLIER}
FAULTS = ("none", "none", "none", "no_price", "crash")


class Crash(Exception):
    """The process failing between a fill's writes (the audit row): the transaction must leave nothing."""


def funded_account(tenant) -> TradingAccount:
    # A new user each example: order rows are never deleted, so an account cannot be emptied.
    account = TradingAccount.objects.get(user=UserFactory(tenant=tenant), is_primary=True)
    account.cash = START
    account.save()
    return account


def equity_at(account: TradingAccount, marks: dict) -> D:
    account.refresh_from_db()
    held = sum(
        (
            p.quantity * marks[(p.exchange, p.symbol)] * multiplier(p.exchange, p.symbol)
            for p in account.paper_positions.all()
        ),
        D("0"),
    )
    return account.cash + held


def multiplier(exchange: str, symbol: str) -> int:
    return MULTIPLIERS.get((exchange, symbol), 1)


def charged(account: TradingAccount) -> D:
    # Slices and unsliced orders carry the fills' charges; a parent only repeats its slices' sum.
    leaves = account.orders.filter(children__isnull=True)
    return leaves.aggregate(total=Sum("charges"))["total"] or D("0")


def place(account, *, exchange, symbol, side, quantity, product) -> None:
    request = OrderRequest(
        symbol=symbol, exchange=exchange, side=side, quantity=D(quantity), order_type="MARKET", product=product
    )
    order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)


steps = st.lists(
    st.tuples(
        st.integers(0, len(INSTRUMENTS) - 1),
        st.sampled_from(["BUY", "SELL"]),
        st.integers(1, 4),  # lots
        st.integers(0, 1),  # product
        st.integers(0, 40_000),  # price, in ticks above the instrument's lowest
        st.sampled_from(FAULTS),
    ),
    min_size=1,
    max_size=6,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
@given(sequence=steps)
def test_fills_move_cash_plus_positions_at_market_by_their_charges_alone(
    tenant, instrument_master, fixed_prices, settings, sequence
):
    settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}
    account = funded_account(tenant)
    marks = {(exchange, symbol): lowest for exchange, symbol, _, _, lowest, _ in INSTRUMENTS}
    for index, side, lots, product, ticks, fault in sequence:
        exchange, symbol, lot, products, lowest, tick = INSTRUMENTS[index]
        price = lowest + ticks * tick
        marks[(exchange, symbol)] = price
        fixed_prices[f"{exchange}:{symbol}"] = str(price)
        if fault == "no_price":
            del fixed_prices[f"{exchange}:{symbol}"]
        before, charges_before, orders_before = equity_at(account, marks), charged(account), account.orders.count()
        order = {
            "exchange": exchange,
            "symbol": symbol,
            "side": side,
            "quantity": lots * lot,
            "product": products[product],
        }
        try:
            if fault == "crash":
                with mock.patch("accounts.paper_fills.order_event_record", side_effect=Crash):
                    place(account, **order)
            else:
                place(account, **order)
        except (ValidationError, Crash) as error:  # refused before it filled, or crashed while filling
            assert_refused_for_the_market(error)  # and nothing may have changed
        fixed_prices[f"{exchange}:{symbol}"] = str(price)
        after, charges_after = equity_at(account, marks), charged(account)
        if exchange == "MCX" and account.paper_positions.filter(symbol=symbol).exclude(quantity=0).exists():
            event("a GOLD lot held")

        assert before - after == charges_after - charges_before >= 0
        assert account.cash >= 0
        if fault != "none":
            assert (after, charges_after, account.orders.count()) == (before, charges_before, orders_before)

    # What the positions say agrees: realised plus unrealised P&L, less the charges, is what was made.
    positions = list(account.paper_positions.all())
    pnl = sum(
        (
            p.realised_pnl
            + (marks[(p.exchange, p.symbol)] - p.average_price) * p.quantity * multiplier(p.exchange, p.symbol)
            for p in positions
        ),
        D(0),
    )
    # Average prices are kept to 4 decimals and each close realises to the cent: a bounded residue per fill.
    residue = D("0.01") * account.orders.count() + D("0.0001") * sum(
        (abs(p.quantity) * multiplier(p.exchange, p.symbol) for p in positions), D(0)
    )
    assert abs((equity_at(account, marks) - START) - (pnl - charged(account))) <= residue


def book_entry(mark: D, asks, bids, tick: D = TICK) -> dict:
    """A fixed-table entry with a book around `mark`: (ticks away, quantity) levels; hostile ones (quantities of
    zero or below, prices at or below zero) among them."""
    return {
        "last_price": str(mark),
        "asks": [[str(mark + ticks * tick), quantity] for ticks, quantity in asks],
        "bids": [[str(mark - ticks * tick), quantity] for ticks, quantity in bids],
    }


def fill_flows(account: TradingAccount, *, after_id: int, marks: dict) -> D:
    """What the fills recorded after audit row `after_id` moved cash plus positions at `marks`, before charges:
    each fill's value at its mark less what it cost (cash moves by the value rounded to the cent)."""
    moved = D("0")
    for row in OrderEvent.objects.filter(order__account=account, kind="filled", pk__gt=after_id):
        fill, order = row.broker_response["fill"], row.order
        quantity, price = D(fill["quantity"]), D(fill["price"])
        sign, units = (1 if order.side == "BUY" else -1), multiplier(order.exchange, order.symbol)
        mark = marks[(order.exchange, order.symbol)]
        moved += sign * (quantity * mark * units - (quantity * price * units).quantize(D("0.01")))
    return moved


def last_event_id() -> int:
    return OrderEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


levels = st.lists(st.tuples(st.integers(0, 4), st.integers(-20, 150)), max_size=3)
depth_steps = st.lists(
    st.tuples(
        st.integers(0, len(INSTRUMENTS) - 1),
        st.sampled_from(["BUY", "SELL"]),
        st.integers(1, 4),  # lots
        st.sampled_from(["MARKET", "LIMIT", "match"]),  # place an order, or run a matching pass
        st.integers(-3, 3),  # a limit's ticks from the mark
        st.sampled_from(["DAY", "IOC"]),
        st.integers(0, 400),  # the mark, in ticks above the instrument's lowest
        levels,  # asks
        levels,  # bids
        st.sampled_from(FAULTS),
    ),
    min_size=1,
    max_size=6,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=depth_steps)
def test_fills_from_the_book_move_cash_plus_positions_by_their_prices_and_charges_alone(
    tenant, instrument_master, fixed_prices, settings, sequence
):
    """Across partial fills from the book (hostile levels among them), with faults: cash plus positions at market
    moves by exactly each fill's difference from the mark and its charges; an order's filled quantity never
    exceeds its quantity nor goes down; each position is the net of its orders' fills."""
    settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}
    account = funded_account(tenant)
    marks = {(exchange, symbol): lowest for exchange, symbol, _, _, lowest, _ in INSTRUMENTS}
    filled_before: dict[int, D] = {}
    for index, side, lots, kind, offset, validity, ticks, asks, bids, fault in sequence:
        exchange, symbol, lot, products, lowest, tick = INSTRUMENTS[index]
        mark = lowest + ticks * tick
        marks[(exchange, symbol)] = mark
        fixed_prices[f"{exchange}:{symbol}"] = book_entry(mark, asks, bids, tick)
        if fault == "no_price":
            del fixed_prices[f"{exchange}:{symbol}"]
        before, charges_before, event_before = equity_at(account, marks), charged(account), last_event_id()
        request = OrderRequest(
            symbol=symbol,
            exchange=exchange,
            side=side,
            quantity=D(lots * lot),
            order_type="LIMIT" if kind == "LIMIT" else "MARKET",
            product=products[0],
            price=mark + offset * tick if kind == "LIMIT" else None,
            validity=validity,
        )
        crash = mock.patch("accounts.paper_fills.order_event_record", side_effect=Crash)
        try:
            with crash if fault == "crash" else contextlib.nullcontext():
                if kind == "match":
                    paper_orders_match(account_id=account.pk)
                else:
                    order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)
        except (ValidationError, Crash) as error:  # refused before it filled, or crashed while filling
            assert_refused_for_the_market(error)  # and nothing may have changed
        after, charges_after = equity_at(account, marks), charged(account)

        assert before - after == (charges_after - charges_before) - fill_flows(
            account, after_id=event_before, marks=marks
        )
        assert charges_after >= charges_before and account.cash >= 0
        if fault == "crash":
            assert (after, charges_after, last_event_id()) == (before, charges_before, event_before)
        for order_id, quantity, filled in account.orders.filter(children__isnull=True).values_list(
            "id", "quantity", "filled_quantity"
        ):
            assert filled_before.get(order_id, D(0)) <= filled <= quantity
            filled_before[order_id] = filled
            if 0 < filled < quantity:
                event("an order partly filled")
        if OrderEvent.objects.filter(pk__gt=event_before, kind="filled", order__exchange="MCX").exists():
            event("a GOLD lot filled")
        if OrderEvent.objects.filter(pk__gt=event_before, kind="filled", broker_response__fill__depth__1__isnull=False):
            event("a fill across levels")

    net: dict[tuple[str, str], D] = {}
    for order in account.orders.filter(children__isnull=True, filled_quantity__gt=0):
        key = (order.symbol, order.product)
        net[key] = net.get(key, D(0)) + (order.filled_quantity if order.side == "BUY" else -order.filled_quantity)
    held = {(p.symbol, p.product): p.quantity for p in account.paper_positions.all() if p.quantity}
    assert held == {key: quantity for key, quantity in net.items() if quantity}


def contracts_of_next_expiry() -> list[Instrument]:
    future = Instrument.objects.get(exchange="NFO", tradingsymbol=NIFTY_FUTURE)
    options = Instrument.objects.filter(
        exchange="NFO", name="NIFTY", expiry=future.expiry, instrument_type__in=["CE", "PE"]
    )
    return [future, *options.order_by("tradingsymbol")]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    legs=st.lists(
        st.tuples(
            st.integers(0, 1_000), st.sampled_from(["BUY", "SELL"]), st.integers(1, 3), st.sampled_from(["NRML", "MIS"])
        ),
        min_size=1,
        max_size=4,
    ),
    index_at=st.integers(23_000 * 20, 26_000 * 20),  # in ticks of 0.05
    minutes_after_close=st.integers(0, 8 * 60),
    price_late=st.booleans(),
)
def test_every_position_is_closed_by_its_expiry_after_the_settlement_task(
    tenant, instrument_master, fixed_prices, legs, index_at, minutes_after_close, price_late
):
    account = funded_account(tenant)
    fixed_prices.pop("NSE:NIFTY 50", None)  # the table outlives an example: no index price from the last one
    contracts = contracts_of_next_expiry()
    for pick, side, lots, product in legs:
        contract = contracts[pick % len(contracts)]
        fixed_prices.setdefault(f"NFO:{contract.tradingsymbol}", "100.00")
        with contextlib.suppress(ValidationError):  # a leg the account cannot afford is refused, as any order
            place(
                account,
                exchange="NFO",
                symbol=contract.tradingsymbol,
                side=side,
                quantity=lots * contract.lot_size,
                product=product,
            )
    spot = index_at * TICK
    closed_at = datetime.combine(contracts[0].expiry, time(15, 30), tzinfo=IST) + timedelta(minutes=minutes_after_close)

    with time_machine.travel(closed_at, tick=False):
        if price_late:  # the source has no index price yet: nothing settles, and the next pass does it
            settle_expired_paper_positions.apply()
        fixed_prices["NSE:NIFTY 50"] = str(spot)
        settle_expired_paper_positions.apply()
        assert settle_expired_paper_positions.apply().get() == 0  # idempotent

    strikes = {c.tradingsymbol: (c.instrument_type, c.strike) for c in contracts}
    for position in account.paper_positions.all():
        assert position.quantity == 0, position
        kind, strike = strikes[position.symbol]
        expected = spot if kind == "FUT" else max((spot - strike) if kind == "CE" else (strike - spot), D(0))
        settled = account.orders.filter(symbol=position.symbol, product=position.product, tag="expiry")
        assert all(order.average_price == expected for order in settled)
        # A closed position's realised P&L is what its orders sold for less what they bought for.
        flows = sum(
            (o.filled_quantity * o.average_price * (1 if o.side == "SELL" else -1))
            for o in account.orders.filter(symbol=position.symbol, product=position.product, status="COMPLETE")
        )
        count = account.orders.filter(symbol=position.symbol, product=position.product).count()
        assert abs(position.realised_pnl - flows) <= D("0.01") * count


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    legs=st.lists(
        st.tuples(st.integers(0, len(INSTRUMENTS) - 1), st.sampled_from(["BUY", "SELL"]), st.integers(1, 3)),
        min_size=1,
        max_size=5,
    ),
    minutes_after=st.integers(0, 30),
    charged_at_all=st.booleans(),
)
def test_the_square_off_closes_every_intraday_position_at_the_mark_for_its_charges_and_fee_alone(
    tenant, instrument_master, fixed_prices, settings, legs, minutes_after, charged_at_all
):
    """Intraday positions on every exchange (a GOLD lot among them, worth 100 times its price), closed by the
    square-off after the latest exchange's time: each is closed by an order of its own at the mark, so cash plus
    positions at market moves by the closes' charges alone; with charges on, each close pays Zerodha's auto
    square-off charge (50 rupees) and its GST on top of the order's own charges, and only the closes do."""
    settings.THOR_PAPER_CHARGES = {"enabled": charged_at_all, "tenants": {}}
    account = funded_account(tenant)
    day = datetime.now(IST).date()
    marks = {}
    with time_machine.travel(datetime.combine(day, time(10, 0), tzinfo=IST), tick=False):
        for index, side, lots in legs:
            exchange, symbol, lot, _, lowest, tick = INSTRUMENTS[index]
            marks[(exchange, symbol)] = lowest + 100 * tick
            fixed_prices[f"{exchange}:{symbol}"] = str(marks[(exchange, symbol)])
            with contextlib.suppress(ValidationError):
                place(account, exchange=exchange, symbol=symbol, side=side, quantity=lots * lot, product="MIS")
    held = account.paper_positions.filter(product="MIS").exclude(quantity=0).count()
    before, charges_before = equity_at(account, marks), charged(account)
    last_cut = max(square_off_at(exchange=exchange, day=day) for exchange, _ in marks)

    with time_machine.travel(last_cut + timedelta(minutes=minutes_after), tick=False):
        assert mis_positions_square_off() == held
        assert mis_positions_square_off() == 0  # run again: nothing more

    assert not account.paper_positions.filter(product="MIS").exclude(quantity=0).exists()
    closes = list(account.orders.filter(tag="squareoff"))
    assert len(closes) == held
    assert before - equity_at(account, marks) == charged(account) - charges_before
    for close in closes:
        assert close.status == "COMPLETE" and close.average_price == marks[(close.exchange, close.symbol)]
        (filled,) = close.events.filter(kind="squared_off")
        components = filled.broker_response["charges"]
        if charged_at_all:
            assert components["auto_square_off"] == "50.00"
            event("charged a square-off")
        else:
            assert components == {"total": "0.00"}
    assert not OrderEvent.objects.filter(
        order__account=account, kind="filled", broker_response__charges__has_key="auto_square_off"
    ).exists()
