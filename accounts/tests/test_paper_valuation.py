"""A paper market order is valued before it is placed at the book it will fill from (issue 21).

A market (or stop-market) buy larger than the best ask walks up the book to a worse average than the last price
plus slippage. Valued at the higher of the two (whole lots, what the book does not show at its worst level shown,
on the tick against the trader), an order the account cannot pay for is refused up front with a 400 naming what
it needs, never accepted and then REJECTED at fill; and the tenant's max order value sees what it will really
cost. A sell walks the bids down: its short's margin keeps the higher of the last price and the walk, and what it
shorts below the mark is asked for the loss too (accounts.checks.sell_fill_floor). Without a
book (no quote, no depth on the order's side) the value is the last price plus slippage, as before.
"""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounts.models import Order, TradingAccount
from accounts.orders import order_place
from accounts.paper_buying_power import reserved_cash
from accounts.tests.conftest import place
from brokers.adapters.types import OrderRequest
from identity.tests.factories import UserFactory
from market.tests.fixtures import NIFTY_FUTURE, NIFTY_LOT, NIFTY_SLICE

pytestmark = pytest.mark.django_db
D = Decimal
START = D("100000.00")
BATCH_URL = "/api/accounts/primary/batch-orders"


def booked(last_price, *, asks=(), bids=()) -> dict:
    """A fixed-table entry with a book: (price, quantity) levels, best first."""
    return {
        "last_price": str(last_price),
        "asks": [[str(price), quantity] for price, quantity in asks],
        "bids": [[str(price), quantity] for price, quantity in bids],
    }


def primary(user) -> TradingAccount:
    return TradingAccount.objects.get(user=user, is_primary=True)


def untouched(account: TradingAccount, cash: Decimal = START) -> bool:
    """Nothing written: no order, no position, no reservation, the cash as it was."""
    account.refresh_from_db()
    return (
        account.cash == cash
        and not account.orders.exists()
        and not account.paper_positions.exists()
        and reserved_cash(account=account) == 0
    )


class TestBuysValuedAtTheBook:
    def test_a_buy_whose_walk_up_the_book_costs_more_than_the_cash_is_a_400_naming_what_it_needs(
        self, alice_client, alice, fixed_prices
    ):
        # 60 at the last price is 90,000 and fits; the book has 10 at 1500 and the other 50 at 1800: 105,000.
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 10), ("1800.00", 100)])

        response = place(alice_client, quantity=60)

        assert response.status_code == 400, response.json()
        assert response.json()["errors"]["quantity"] == [
            "Insufficient buying power: needs 105000.00, available 100000.00."
        ]
        assert untouched(primary(alice))

    def test_a_buy_the_account_can_pay_for_still_fills_across_the_levels(self, alice_client, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 10), ("1800.00", 100)])

        response = place(alice_client, quantity=50)

        assert response.status_code == 201, response.json()
        body = response.json()
        # (10 x 1500 + 40 x 1800) / 50 = 1740: 87,000.
        assert (body["status"], body["filled_quantity"], body["average_price"]) == ("COMPLETE", 50, "1740.0000")
        account = primary(alice)
        assert account.cash == START - D("87000.00")
        assert account.paper_positions.get().quantity == 50

    def test_what_the_book_does_not_show_is_valued_at_its_worst_level(self, alice_client, alice, fixed_prices):
        # 30 shown (10 at 1500, 20 at 1700); the other 30 at 1700 too: 100,000 / 60 = 1666.67, up to 1666.70.
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 10), ("1700.00", 20)])

        refused = place(alice_client, quantity=60)
        placed = place(alice_client, quantity=59)  # 98,300: it fits, fills what is shown and rests

        assert refused.status_code == 400
        assert refused.json()["errors"]["quantity"] == [
            "Insufficient buying power: needs 100002.00, available 100000.00."
        ]
        assert placed.status_code == 201, placed.json()
        assert (placed.json()["status"], placed.json()["filled_quantity"]) == ("OPEN", 30)

    def test_the_slippage_is_the_floor_of_the_value(self, alice_client, alice, fixed_prices, settings):
        # The walk (1500.00) is below the last price plus 100 bps (1515.00): 66 x 1515 = 99,990 fits, 67 does not.
        settings.THOR_PAPER_SLIPPAGE_BPS = 100
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 1000)])

        refused = place(alice_client, quantity=67)

        assert refused.json()["errors"]["quantity"] == [
            "Insufficient buying power: needs 101505.00, available 100000.00."
        ]

    def test_a_stop_market_buy_that_triggers_at_once_is_valued_at_the_book(self, alice_client, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 10), ("1800.00", 100)])

        response = place(alice_client, quantity=60, order_type="SL-M", trigger_price="1490.00")

        assert response.status_code == 400
        assert "needs 105000.00" in response.json()["errors"]["quantity"][0]
        assert untouched(primary(alice))

    def test_a_quote_without_depth_is_valued_at_the_last_price_as_before(self, alice_client, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1499.95", 10)])  # nothing on the asks

        response = place(alice_client, quantity=66)

        assert response.status_code == 201 and response.json()["status"] == "COMPLETE"

    def test_futures_are_walked_in_whole_lots(self, alice_client, alice, instrument_master, fixed_prices):
        # 120 shown: one lot of 65 from the 100 at 24000; the second lot (the 35 and 20 left make no lot) at the
        # worst level: (65 x 24000 + 65 x 24001) / 130 = 24000.50. Lots ignored it would be about 24000.23.
        fixed_prices[f"NFO:{NIFTY_FUTURE}"] = booked("24000.00", asks=[("24000.00", 100), ("24001.00", 20)])
        account = primary(alice)
        account.cash = 2 * NIFTY_LOT * D("24000.50") - D("0.01")
        account.save()

        response = place(
            alice_client, tradingsymbol=NIFTY_FUTURE, exchange="NFO", product="NRML", quantity=2 * NIFTY_LOT
        )

        assert response.status_code == 400
        assert response.json()["errors"]["quantity"] == [
            f"Insufficient buying power: needs 3120065.00, available {account.cash}."
        ]


class TestBatches:
    def test_a_later_leg_is_valued_at_what_the_earlier_legs_left_of_the_book(self, alice_client, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 30), ("1800.00", 100)])
        account = primary(alice)
        account.cash = D("95000.00")
        account.save()
        legs = [{**leg, "quantity": 30} for leg in (_leg(), _leg())]

        response = alice_client.post(BATCH_URL, {"orders": legs}, format="json")

        # The first leg takes the 30 at 1500 (45,000); the second fills at 1800 (54,000), more than the 50,000 left.
        assert response.status_code == 400
        assert response.json()["errors"]["orders.1.quantity"] == [
            "Insufficient buying power: needs 54000.00, available 50000.00."
        ]
        assert untouched(account, cash=D("95000.00"))


def _leg() -> dict:
    return {
        "tradingsymbol": "INFY",
        "exchange": "NSE",
        "transaction_type": "BUY",
        "order_type": "MARKET",
        "product": "CNC",
    }


class TestTenantMaxOrderValue:
    def test_the_limit_sees_the_walked_value(self, alice_client, alice, tenant, fixed_prices):
        tenant.max_order_value = D("100000.00")
        tenant.save()
        account = primary(alice)
        account.cash = D("10000000.00")
        account.save()
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 10), ("1800.00", 100)])

        refused = place(alice_client, quantity=60)  # 90,000 at the last price; 105,000 up the book
        placed = place(alice_client, quantity=55)  # 15,000 + 45 x 1800 = 96,000

        assert refused.status_code == 400
        assert refused.json()["errors"]["quantity"] == ["Order value 105000.00 exceeds the limit of 100000.00."]
        assert placed.status_code == 201 and placed.json()["status"] == "COMPLETE"


class TestSells:
    def test_a_shorts_margin_is_never_valued_below_the_last_price_by_walking_the_bids_down(
        self, alice_client, alice, tenant, fixed_prices
    ):
        tenant.paper_margin_rates = {"MIS": "0.25"}
        tenant.save()
        account = primary(alice)
        account.cash = D("3600.00")  # 10 x 1400 x 25% = 3,500 would fit; 10 x 1500 x 25% = 3,750 does not
        account.save()
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1400.00", 100)])

        response = place(alice_client, transaction_type="SELL", quantity=10, product="MIS")

        assert response.status_code == 400
        # The margin at the mark, 3,750, and the 10 x (1500 - 1400) the fill loses at once (test_paper_reserve_shorts).
        assert response.json()["errors"]["quantity"] == ["Insufficient buying power: needs 4750.00, available 3600.00."]

    def test_bids_above_the_last_price_value_the_short_at_them(self, alice_client, alice, tenant, fixed_prices):
        tenant.paper_margin_rates = {"MIS": "0.25"}
        tenant.save()
        account = primary(alice)
        account.cash = D("3800.00")  # 3,750 at the last price would fit; 10 x 1600 x 25% = 4,000 does not
        account.save()
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1600.00", 100)])

        response = place(alice_client, transaction_type="SELL", quantity=10, product="MIS")

        assert response.json()["errors"]["quantity"] == ["Insufficient buying power: needs 4000.00, available 3800.00."]


HOSTILE = [
    ("1500.00", 0),
    ("1400.00", -50),
    ("0", 100),
    ("-1", 100),
    ("NaN", 100),
    ("Infinity", 100),
    ("-Infinity", 100),
]


class TestHostileDepth:
    def test_levels_no_exchange_would_show_are_ignored_as_the_fill_ignores_them(
        self, alice_client, alice, fixed_prices
    ):
        # Were the zero, negative or NaN levels trusted, the 60 would look cheap (or the walk would fail).
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[*HOSTILE, ("1800.00", 100)])

        response = place(alice_client, quantity=60)

        assert response.status_code == 400
        assert response.json()["errors"]["quantity"] == [
            "Insufficient buying power: needs 108000.00, available 100000.00."
        ]
        assert untouched(primary(alice))

    def test_a_huge_level_is_filled_from_as_any_other(self, alice_client, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[*HOSTILE, ("1500.05", 10**30), ("1E+30", 10**30)])

        response = place(alice_client, quantity=60)

        assert response.status_code == 201, response.json()
        assert (response.json()["status"], response.json()["average_price"]) == ("COMPLETE", "1500.0500")

    def test_a_level_priced_beyond_what_any_order_can_carry_is_ignored(self, alice_client, alice, fixed_prices):
        # Trusted, the 11th share would cost 1E+30: a value no money column holds (it used to fail the fill, a 500).
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.05", 10), ("1E+30", 5), ("10000000000", 5)])

        response = place(alice_client, quantity=11)

        assert response.status_code == 201, response.json()
        assert (response.json()["status"], response.json()["filled_quantity"]) == ("OPEN", 10)


# The property: (exchange, symbol, lot, mark) of a cash equity and the NIFTY future (sliced above 1800).
INSTRUMENTS = (("NSE", "INFY", 1, D("1500.00")), ("NFO", NIFTY_FUTURE, NIFTY_LOT, D("24000.00")))
TICK = D("0.05")
# no_price: Kite's quote of a contract that has not traded, a last price of 0, alone or over a book all the same.
BOOK_FAULTS = ("book", "book", "book", "no_quote", "no_depth", "thin", "no_price", "no_price_book")
UNPRICED_FAULTS = ("no_quote", "no_price", "no_price_book")
# (ticks off the mark, quantity in half lots): zero, negative and part-lot quantities among them.
levels = st.lists(st.tuples(st.integers(-2, 6000), st.integers(-2, 40)), min_size=1, max_size=4)
steps = st.lists(
    st.tuples(
        st.integers(0, len(INSTRUMENTS) - 1),
        st.sampled_from(["BUY", "BUY", "BUY", "SELL"]),
        st.integers(1, 30),  # lots
        st.sampled_from(["MARKET", "SL-M"]),
        st.integers(-3, 3),  # a stop's trigger, in ticks from the mark
        st.integers(-200, 200),  # the mark, in ticks from the instrument's
        levels,
        st.sampled_from(BOOK_FAULTS),
    ),
    min_size=1,
    max_size=5,
)


def quoted(key: str, *, mark: D, lot: int, asks, fault: str, fixed_prices) -> None:
    """The quote the step's order is checked and filled at: none, a last price alone, a book (thin: one level
    of at most a lot), the bids the asks' mirror; or a last price of 0, alone or over that book, which prices
    nothing."""
    if fault == "no_quote":
        fixed_prices.pop(key, None)
        return
    if fault in ("no_depth", "no_price"):
        fixed_prices[key] = "0" if fault == "no_price" else str(mark)
        return
    if fault == "thin":
        asks = [(ticks, min(halves, 2)) for ticks, halves in asks[:1]]
    half = max(lot // 2, 1)
    fixed_prices[key] = booked(
        D("0") if fault == "no_price_book" else mark,
        asks=[(mark + ticks * TICK, halves * half) for ticks, halves in asks],
        bids=[(mark - ticks * TICK, halves * half) for ticks, halves in asks],
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
@given(sequence=steps, headroom=st.integers(95, 130), slippage=st.sampled_from([0, 5]))
def test_an_order_that_passes_the_pre_trade_check_is_never_refused_at_fill_for_funds(
    tenant, instrument_master, fixed_prices, settings, sequence, headroom, slippage
):
    """With the quote unchanged between check and fill, whatever the book (thin, hostile, none, no quote at all):
    a market-type order is either refused before anything is written, or accepted and never refused at fill
    for funds; cash never goes below zero. The account starts with `headroom` percent of its first order's
    value at the last price: often enough at the last price, not always up the book."""
    settings.THOR_PAPER_SLIPPAGE_BPS = slippage
    account = primary(UserFactory(tenant=tenant))  # a new user each example: order rows are never deleted
    for step, (index, side, lots, order_type, trigger_ticks, mark_ticks, asks, fault) in enumerate(sequence):
        exchange, symbol, lot, base = INSTRUMENTS[index]
        mark = base + mark_ticks * TICK
        quoted(f"{exchange}:{symbol}", mark=mark, lot=lot, asks=asks, fault=fault, fixed_prices=fixed_prices)
        if step == 0:
            account.cash = (lots * lot * mark * headroom / 100).quantize(D("0.01"))
            account.save()
        event(fault)
        if lots * lot > NIFTY_SLICE:
            event("sliced")
        request = OrderRequest(
            symbol=symbol,
            exchange=exchange,
            side=side,
            quantity=D(lots * lot),
            order_type=order_type,
            product="CNC" if exchange == "NSE" else "NRML",
            trigger_price=mark + trigger_ticks * TICK if order_type == "SL-M" else None,
        )
        orders_before = account.orders.count()
        try:
            order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)
        except ValidationError as error:
            assert_refused_for_the_market(error)
            event("refused before")
            assert account.orders.count() == orders_before
        account.refresh_from_db()
        refused_at_fill = account.orders.filter(status_message__contains="Insufficient funds at fill")
        assert not refused_at_fill.exists(), list(refused_at_fill.values("quantity", "status", "status_message"))
        assert account.cash >= 0
        assert_every_fill_at_a_market_price(account)
    assert not Order.objects.filter(account=account, status=Order.Status.REJECTED).exists()


def assert_refused_for_the_market(error: Exception) -> None:
    """The examples draw well-formed orders (whole lots, on the tick): a refusal must be the market's or the
    account's (funds, no price), never the order's shape, or the property would test refusals only."""
    if isinstance(error, ValidationError):
        assert "multiple of the lot size" not in str(error) and "tick size" not in str(error), error


def assert_every_fill_at_a_market_price(account) -> None:
    """Nothing ever fills at zero or below: not at a quote of 0 (a contract that has not traded), nor anywhere else."""
    free = account.orders.filter(filled_quantity__gt=0, average_price__lte=0)
    assert not free.exists(), list(free.values("symbol", "side", "filled_quantity", "average_price"))


class TestChargesAreAffordedUpFront:
    """A fill debits its charges with its cost; the check asks for both, so that a buy sized to the last rupee is
    refused before it is placed, never REJECTED at its fill."""

    @pytest.fixture(autouse=True)
    def charges_on(self, settings):
        settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}

    def test_a_buy_whose_cost_fits_but_not_with_its_charges_is_a_400(self, alice_client, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = "1000.00"

        response = place(alice_client, quantity=100, product="MIS")  # 100,000.00: all the cash, charges on top

        assert response.status_code == 400, response.json()
        (message,) = response.json()["errors"]["quantity"]
        needed = D(message.split("needs ")[1].split(",")[0])
        assert needed > D("100000.00")  # the cost and its charges
        assert untouched(primary(alice))

    def test_a_buy_with_room_for_its_charges_fills_and_pays_them(self, alice_client, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = "1000.00"

        response = place(alice_client, quantity=99, product="MIS")

        assert response.status_code == 201, response.json()
        assert response.json()["status"] == "COMPLETE"
        account = primary(alice)
        assert D("0") < account.cash < START - D("99000.00")  # the cost, and charges besides
