"""A paper account's funds show the buying power the pre-trade check gives (accounts.paper_funds).

The check reserves a resting short sale (a sell, not CNC, beyond the long held) at the higher of its limit and its
instrument's mark, with what it loses at once if it fills below the mark (test_paper_reserve_shorts says why), and
it reads the marks of the resting orders' instruments as well as of the positions (accounts.orders.place.last_prices).
GET .../funds and a socket's funds (accounts.pnl) reserve resting orders at the same marks, read in the same call
as the positions' prices: valued at the positions' marks alone, a short sale resting on an instrument not held
showed room the next order's check did not give. An instrument without a price reserves its orders at their own
prices, as the check does, and never fails the read.

Both mark at the same prices (accounts.paper_funds.paper_marks): the market stream's while it is fresh (or newer than
the quote), else the quote's, and a held instrument's stale one too. The check once marked at the fresh quotes alone:
a short held on an instrument the stream had moved, or whose only price was stale, left the check and the funds a
tick (or the whole move) apart.
"""

import time
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accounts.models import Order, PaperPosition, TradingAccount
from accounts.orders import order_place
from accounts.orders.place import last_prices
from accounts.paper_buying_power import RESERVE_PRICE, paper_buying_power, reserved_cash
from accounts.pnl import book_load, book_tick, position_prices_message
from accounts.presenters import funds_data
from accounts.selectors import funds_get
from accounts.tests.conftest import place
from accounts.tests.test_paper_valuation import INSTRUMENTS, TICK, booked, primary
from brokers.adapters.types import OrderRequest
from identity.tests.factories import UserFactory
from market import caches
from market.selectors import instrument_token
from thor.coordination import redis_client, uses_redis

pytestmark = pytest.mark.django_db
D = Decimal
START = D("100000.00")


@pytest.fixture
def quarter(tenant):
    tenant.paper_margin_rates = {"MIS": "0.25", "NRML": "0.25"}
    tenant.save()


def short_sale_resting_below_the_mark(account: TradingAccount, fixed_prices) -> Order:
    """10 INFY sold short at a limit of 1450 under a mark of 1500: the bids (1400) do not cross it, so it rests."""
    fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1400.00", 100)])
    request = OrderRequest(
        symbol="INFY", exchange="NSE", side="SELL", quantity=D(10), order_type="LIMIT", product="MIS", price=D(1450)
    )
    order = order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)
    assert order.status == "OPEN" and not account.paper_positions.exists()
    account.refresh_from_db()
    return order


def the_checks_buying_power(account: TradingAccount) -> Decimal:
    """What the next order's check finds available: at the marks the placement reads."""
    return paper_buying_power(account=account, marks=last_prices(account, []).marks())


def funds_read(client, account: TradingAccount) -> dict:
    response = client.get(f"/api/accounts/{account.pk}/funds")
    assert response.status_code == 200, response.json()
    return response.json()["data"]


def socket_funds(account: TradingAccount) -> dict:
    book = book_load(account.pk)
    assert book is not None
    return position_prices_message(book, [], as_of=timezone.now())["data"]["funds"]


class TestARestingShortSaleOnAnInstrumentNotHeld:
    def test_funds_show_the_buying_power_the_check_gives_reserving_its_margin_at_the_mark_and_its_loss(
        self, alice, alice_client, fixed_prices, quarter
    ):
        account = primary(alice)
        short_sale_resting_below_the_mark(account, fixed_prices)

        funds = funds_read(alice_client, account)

        # 10 x 1500 x 0.25 margin at the mark and 10 x (1500 - 1450) lost once it fills, not 10 x 1450 x 0.25.
        assert D(funds["utilised"]) == D("4250.00")
        assert D(funds["available"]) == D(funds["buying_power"]) == the_checks_buying_power(account) == START - 4250

    def test_the_sockets_funds_are_the_same_as_the_rest_read(self, alice, alice_client, fixed_prices, quarter):
        account = primary(alice)
        short_sale_resting_below_the_mark(account, fixed_prices)

        assert socket_funds(account) == funds_read(alice_client, account)
        assert D(socket_funds(account)["buying_power"]) == the_checks_buying_power(account)

    def test_a_mark_that_rises_after_the_sale_rests_is_what_funds_reserve_it_at(
        self, alice, alice_client, fixed_prices, quarter
    ):
        account = primary(alice)
        short_sale_resting_below_the_mark(account, fixed_prices)
        fixed_prices["NSE:INFY"] = booked("1600.00", bids=[("1400.00", 100)])

        funds = funds_read(alice_client, account)

        # 10 x 1600 x 0.25 and 10 x (1600 - 1450).
        assert D(funds["utilised"]) == D("5500.00")
        assert D(funds["buying_power"]) == the_checks_buying_power(account) == START - 5500

    def test_the_next_order_is_refused_past_the_buying_power_funds_show_and_placed_within_it(
        self, alice, alice_client, fixed_prices, quarter
    ):
        account = primary(alice)
        short_sale_resting_below_the_mark(account, fixed_prices)
        fixed_prices["NSE:SBIN"] = "800.00"
        shown = D(funds_read(alice_client, account)["buying_power"])
        affordable = int(shown // 800)

        refused = place(alice_client, tradingsymbol="SBIN", quantity=affordable + 1)
        placed = place(alice_client, tradingsymbol="SBIN", quantity=affordable)

        assert refused.status_code == 400, refused.json()
        assert refused.json()["errors"]["quantity"] == [
            f"Insufficient buying power: needs {(affordable + 1) * 800}.00, available {shown}."
        ]
        assert placed.status_code == 201 and placed.json()["status"] == "COMPLETE", placed.json()


class TestTheMarketStreamsPrice:
    def test_the_next_order_is_checked_against_the_funds_at_the_streams_price_not_the_quotes(
        self, alice, alice_client, fixed_prices, quarter, instrument_master
    ):
        account = primary(alice)
        short_sale_resting_below_the_mark(account, fixed_prices)
        stream_prices_set({("NSE", "INFY"): (D("1600.00"), True)})  # the quote still says 1500
        shown = D(funds_read(alice_client, account)["buying_power"])
        affordable = int(shown // 800)

        refused = place(alice_client, tradingsymbol="SBIN", quantity=affordable + 1)
        placed = place(alice_client, tradingsymbol="SBIN", quantity=affordable)

        # 10 x 1600 x 0.25 and 10 x (1600 - 1450) reserved for the short sale: at the stream's price, as funds show.
        assert shown == START - 5500
        assert refused.status_code == 400, refused.json()
        assert refused.json()["errors"]["quantity"] == [
            f"Insufficient buying power: needs {(affordable + 1) * 800}.00, available {shown}."
        ]
        assert placed.status_code == 201 and placed.json()["status"] == "COMPLETE", placed.json()

    def test_a_stream_store_that_cannot_be_read_leaves_the_check_at_the_quotes(
        self, alice, alice_client, fixed_prices, quarter, instrument_master, monkeypatch
    ):
        account = primary(alice)
        short_sale_resting_below_the_mark(account, fixed_prices)

        def down(tokens):
            raise ConnectionError("redis://secret@host")

        monkeypatch.setattr("market.selectors.last_prices_read", down)
        shown = D(funds_read(alice_client, account)["buying_power"])

        placed = place(alice_client, tradingsymbol="SBIN", quantity=int(shown // 800))

        assert shown == START - 4250  # 10 x 1500 x 0.25 and 10 x (1500 - 1450): the quote's price
        assert placed.status_code == 201 and placed.json()["status"] == "COMPLETE", placed.json()
        account.refresh_from_db()
        assert the_checks_buying_power(account) == D(funds_read(alice_client, account)["buying_power"])


class TestInstrumentsWithoutAPrice:
    def test_a_resting_short_sale_without_a_price_is_reserved_at_its_limit_and_funds_still_answer(
        self, alice, alice_client, fixed_prices, quarter
    ):
        account = primary(alice)
        short_sale_resting_below_the_mark(account, fixed_prices)
        del fixed_prices["NSE:INFY"]

        funds = funds_read(alice_client, account)

        assert D(funds["utilised"]) == D("3625.00")  # 10 x 1450 x 0.25: its limit, as the check reserves it
        assert D(funds["buying_power"]) == the_checks_buying_power(account)
        assert socket_funds(account) == funds

    def test_a_quote_service_that_can_price_nothing_fails_no_funds_read_of_an_account_holding_nothing(
        self, alice, alice_client, fixed_prices, quarter, settings
    ):
        account = primary(alice)
        short_sale_resting_below_the_mark(account, fixed_prices)
        settings.THOR_PAPER_PRICE_SOURCE = "kite"  # the tenant has no market-data session: no quote can be had

        funds = funds_read(alice_client, account)

        assert D(funds["utilised"]) == D("3625.00")
        assert reserved_cash(account=account) == D("3625.00")
        assert socket_funds(account) == funds

    def test_a_quote_service_that_can_price_nothing_is_still_a_503_for_an_account_with_positions(
        self, alice, alice_client, fixed_prices, settings
    ):
        # As before the resting orders were priced: a position's value cannot be read without a price.
        placed = place(alice_client, quantity=1)
        assert placed.status_code == 201, placed.json()
        settings.THOR_PAPER_PRICE_SOURCE = "kite"

        response = alice_client.get("/api/accounts/primary/funds")

        assert response.status_code == 503 and response.json()["code"] == "market_data_unavailable"


# A book written as it stands (positions and resting orders, whatever placed them), then marks of the moment, some
# instruments without one. SBIN beside the two of test_paper_valuation: three instruments, some never held.
WORLD = (*INSTRUMENTS, ("NSE", "SBIN", 1, D("800.00")))
positions = st.lists(
    st.tuples(
        st.integers(0, len(WORLD) - 1),
        st.sampled_from(["MIS", "CNC"]),  # a future's CNC is NRML
        st.integers(-30, 30),  # lots: shorts, longs and closed positions
        st.integers(-400, 400),  # the average price, in ticks from the instrument's
    ),
    max_size=4,
)
resting = st.lists(
    st.tuples(
        st.integers(0, len(WORLD) - 1),
        st.sampled_from(["BUY", "SELL", "SELL"]),
        st.sampled_from(["MIS", "MIS", "CNC"]),
        st.integers(1, 30),  # lots
        st.integers(0, 30),  # lots filled already (a partly filled order), at most all but one
        st.sampled_from(["LIMIT", "LIMIT", "SL-M", "MARKET"]),  # a market order rests at the price kept for it
        st.integers(-400, 400),  # its price (limit, trigger or kept), in ticks from the instrument's
    ),
    min_size=1,
    max_size=6,
)
marks = st.tuples(*[st.one_of(st.none(), st.integers(-600, 600)) for _ in WORLD])  # in ticks; None: no price
NONE = (None, None, None)
# The market stream's last price of each instrument, in ticks, heard just now or an hour ago; None: never heard.
streamed_prices = st.tuples(*[st.one_of(st.none(), st.tuples(st.integers(-600, 600), st.booleans())) for _ in WORLD])


def stream_prices_set(heard: dict[tuple[str, str], tuple[Decimal, bool]]) -> None:
    """The market stream's last prices: each instrument's price, heard just now (True) or an hour ago; no others."""
    if uses_redis():
        redis_client().delete(caches.LAST_PRICES_KEY)
    caches.ticks_flush()
    for (exchange, symbol), (price, fresh) in heard.items():
        caches.last_prices_write(
            {instrument_token(exchange=exchange, tradingsymbol=symbol): str(price)},
            received_at=time.time() - (0 if fresh else 3600),
        )


def stream_heard(streamed) -> None:
    """The market stream's last prices as `streamed` says (in ticks from each WORLD instrument's base, fresh or an
    hour old; None: never heard)."""
    stream_prices_set(
        {
            (exchange, symbol): (max(base + heard[0] * TICK, TICK), heard[1])
            for (exchange, symbol, _, base), heard in zip(WORLD, streamed, strict=True)
            if heard is not None
        }
    )


def book_written(account: TradingAccount, held, orders) -> None:
    for index, product, lots, average_ticks in held:
        exchange, symbol, lot, base = WORLD[index]
        PaperPosition.objects.update_or_create(
            account=account,
            exchange=exchange,
            symbol=symbol,
            product="NRML" if exchange == "NFO" and product == "CNC" else product,
            defaults={"quantity": D(lots * lot), "average_price": base + average_ticks * TICK},
        )
    for number, (index, side, product, lots, filled, order_type, ticks) in enumerate(orders):
        exchange, symbol, lot, base = WORLD[index]
        price = max(base + ticks * TICK, TICK)
        filled = min(filled, lots - 1)
        Order.objects.create(
            account=account,
            client_order_id=f"resting{number}",
            symbol=symbol,
            exchange=exchange,
            side=side,
            quantity=D(lots * lot),
            filled_quantity=D(filled * lot),
            average_price=price if filled else None,
            order_type=order_type,
            product="NRML" if exchange == "NFO" and product == "CNC" else product,
            price=price if order_type == "LIMIT" else None,
            trigger_price=price if order_type == "SL-M" else None,
            raw={RESERVE_PRICE: str(price)} if order_type == "MARKET" else {},
            status=Order.Status.TRIGGER_PENDING if order_type == "SL-M" else Order.Status.OPEN,
        )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
# The specification's book: a short sale resting on INFY under its mark, nothing held.
@example(
    held=[], orders=[(0, "SELL", "MIS", 10, 0, "LIMIT", -1000)], quoted=(0, None, None), streamed=NONE, charges=False
)
# INFY held on two products at two average prices and without a price: the socket valued both, and the short, at one.
@example(
    held=[(0, "MIS", 0, 0), (0, "CNC", -1, 1)],
    orders=[(0, "BUY", "MIS", 1, 0, "LIMIT", 0)],
    quoted=(None, None, None),
    streamed=NONE,
    charges=False,
)
# INFY held short, the stream's price above the quote: funds marked the short at the stream's, the check at the quote's.
@example(
    held=[(0, "MIS", -1, 0)],
    orders=[(1, "BUY", "MIS", 1, 0, "LIMIT", -100)],
    quoted=(0, None, None),
    streamed=((50, True), None, None),
    charges=False,
)
# INFY held short, no quote, the stream's price an hour old: funds marked it there, the check at its average price.
@example(
    held=[(0, "MIS", -1, 0)],
    orders=[(1, "BUY", "MIS", 1, 0, "LIMIT", -100)],
    quoted=(None, 0, None),
    streamed=((300, False), None, None),
    charges=False,
)
@given(held=positions, orders=resting, quoted=marks, streamed=streamed_prices, charges=st.booleans())
def test_the_funds_read_shows_the_buying_power_the_check_finds_at_the_same_marks(
    tenant, quarter, instrument_master, fixed_prices, settings, held, orders, quoted, streamed, charges
):
    """Whatever the account holds and has resting (buys, sells of what is held, short sales, partly filled, on
    instruments held and not, priced and not), and whatever the market stream heard of those instruments (lately or
    not), GET .../funds and the socket's funds show as buying power what the next order's check finds available, at
    the prices of the moment."""
    settings.THOR_PAPER_CHARGES = {"enabled": charges, "tenants": {}}
    account = primary(UserFactory(tenant=tenant))  # a new user each example: order rows are never deleted
    book_written(account, held, orders)
    for (exchange, symbol, _, base), ticks in zip(WORLD, quoted, strict=True):
        fixed_prices.pop(f"{exchange}:{symbol}", None)
        if ticks is not None:
            fixed_prices[f"{exchange}:{symbol}"] = str(max(base + ticks * TICK, TICK))
    stream_heard(streamed)

    funds = funds_get(account=account).data

    assert funds.buying_power == funds.available == the_checks_buying_power(account)
    assert socket_funds(account) == funds_data(funds)


def marked(quoted) -> dict[str, str]:
    """The fixed price table of `quoted` (ticks from each WORLD instrument's base; None: no price)."""
    return {
        f"{exchange}:{symbol}": str(max(base + ticks * TICK, TICK))
        for (exchange, symbol, _, base), ticks in zip(WORLD, quoted, strict=True)
        if ticks is not None
    }


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
# A short sale resting on INFY, nothing held: INFY's tick moves its margin (reserved at the mark above its limit).
@example(
    held=[],
    orders=[(0, "SELL", "MIS", 10, 0, "LIMIT", -100)],
    quoted=(0, None, None),
    ticked=(50, None, None),
    charges=False,
)
@given(held=positions, orders=resting, quoted=marks, ticked=marks, charges=st.booleans())
def test_after_any_ticks_the_sockets_funds_are_what_funds_show_at_those_prices(
    tenant, quarter, instrument_master, settings, held, orders, quoted, ticked, charges
):
    """The socket's book, read at one moment's prices and then moved by ticks (of instruments held, of instruments
    only resting orders are on), shows the funds GET .../funds shows at the prices the ticks left: what the
    resting orders reserve moves with their instruments' marks as the positions' values do."""
    settings.THOR_PAPER_PRICE_SOURCE = "fixed"
    settings.THOR_PAPER_SLIPPAGE_BPS = 0
    settings.THOR_PAPER_CHARGES = {"enabled": charges, "tenants": {}}
    account = primary(UserFactory(tenant=tenant))  # a new user each example: order rows are never deleted
    book_written(account, held, orders)
    settings.THOR_PAPER_FIXED_PRICES = marked(quoted)
    book = book_load(account.pk)
    assert book is not None

    for (exchange, symbol, _, base), ticks in zip(WORLD, ticked, strict=True):
        if ticks is not None:
            book_tick(book, instrument_token(exchange=exchange, tradingsymbol=symbol), max(base + ticks * TICK, TICK))
    settings.THOR_PAPER_FIXED_PRICES = marked(
        [tick if tick is not None else quote for quote, tick in zip(quoted, ticked, strict=True)]
    )

    funds = funds_data(funds_get(account=account).data)
    assert position_prices_message(book, [], as_of=timezone.now())["data"]["funds"] == funds
