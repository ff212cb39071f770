"""Shorts in what a paper order is checked on and what it reserves (issue 21, continued).

A short (a sell beyond the long position, on an intraday or futures product) is margined at the mark, the last
price (accounts.paper_buying_power.PaperCommitments.short_exposure): its proceeds are in cash but owed back. So:

- A short sale needs its margin at the price it is valued at and its charges (paid from buying power: its
  proceeds are not). A resting one reserves them at the higher of its limit and the mark, as it was checked.
- A short filled BELOW the mark (sold into bids under the last price, a limit sell below the mark, the market
  slippage) loses the difference at once, marked at the last price: its proceeds fall short of what buying it
  back at the mark costs by (mark - fill price) x quantity. The check asks for that loss as well, at the lowest
  price the sale can fill at (accounts.checks.sell_fill_floor: the walk down the bids for a marketable order,
  the slippage for a market order without depth, the limit for what rests), and a resting short sale reserves
  it at its limit; the same routine reckons both (accounts.paper_buying_power._side_reserve). So a short the
  check lets through never leaves buying power below zero after its fill at the prices it was checked at.
- A buy that buys a short back needs no cost for that part (the exposure holds the buying back at the mark),
  only what it costs beyond the mark plus margin; other resting buys that buy the same short back come first.
- A buy's fill marks the shorts at the pass's last prices, as its check did, not at its own fill price.
"""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.charges import fill_charges
from accounts.models import Order
from accounts.orders import order_place
from accounts.paper import paper_orders_match
from accounts.paper_buying_power import paper_buying_power, reserved_cash
from accounts.tests.test_paper_valuation import booked, primary
from brokers.adapters.types import OrderRequest

pytestmark = pytest.mark.django_db
D = Decimal
INFY = {("NSE", "INFY"): D("1500.00")}  # the mark of every test here


@pytest.fixture
def quarter(tenant):
    tenant.paper_margin_rates = {"MIS": "0.25"}
    tenant.save()


def placed(account, *, side, quantity, order_type="MARKET", price=None) -> Order:
    request = OrderRequest(
        symbol="INFY",
        exchange="NSE",
        side=side,
        quantity=D(quantity),
        order_type=order_type,
        product="MIS",
        price=None if price is None else D(price),
    )
    return order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)


def short_ten(account, fixed_prices, *, room: str) -> None:
    """10 INFY sold short at 1500 (no depth: at the last price), then cash taken out to leave `room`."""
    fixed_prices["NSE:INFY"] = "1500.00"
    assert placed(account, side="SELL", quantity=10).status == "COMPLETE"
    account.refresh_from_db()
    account.cash -= paper_buying_power(account=account, marks=INFY) - D(room)
    account.save()


class TestBuyingBack:
    def test_a_buy_back_walking_the_asks_above_the_last_price_is_not_refused_at_fill(
        self, alice, fixed_prices, quarter
    ):
        short_ten(alice_account := primary(alice), fixed_prices, room="10.00")
        # The exposure holds 18,750 for buying back at 1500 plus margin; the asks are at 1600, within it. Marked at
        # its fill price (1600: 20,000) the short looked dearer to the fill than to the check.
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1600.00", 100)])

        order = placed(alice_account, side="BUY", quantity=10)

        assert (order.status, order.average_price) == ("COMPLETE", D("1600")), order.status_message
        alice_account.refresh_from_db()
        assert paper_buying_power(account=alice_account, marks=INFY) == D("2760.00") > 0

    def test_a_buy_back_far_above_the_mark_needs_what_it_costs_beyond_the_shorts_exposure(
        self, alice, fixed_prices, quarter
    ):
        short_ten(account := primary(alice), fixed_prices, room="10.00")
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("2000.00", 100)])

        with pytest.raises(ValidationError) as refused:
            placed(account, side="BUY", quantity=10)

        # 10 x (2000 - 1500 x 1.25)
        assert refused.value.message_dict["quantity"] == ["Insufficient buying power: needs 1250.00, available 10.00."]

    def test_a_resting_buy_back_reserves_no_cost_for_the_short_it_buys_back(self, alice, fixed_prices, quarter):
        short_ten(account := primary(alice), fixed_prices, room="10.00")
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1600.00", 100)])

        order = placed(account, side="BUY", quantity=10, order_type="LIMIT", price="1550.00")

        assert order.status == "OPEN"
        assert reserved_cash(account=account, marks=INFY) == 0
        assert paper_buying_power(account=account, marks=INFY) == D("10.00")

    def test_a_second_buy_back_of_a_short_already_being_bought_back_needs_its_cost(self, alice, fixed_prices, quarter):
        short_ten(account := primary(alice), fixed_prices, room="10.00")
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1600.00", 100)])
        placed(account, side="BUY", quantity=10, order_type="LIMIT", price="1550.00")

        # Whichever fills first buys the short back; the other then buys 10 outright.
        with pytest.raises(ValidationError) as refused:
            placed(account, side="BUY", quantity=10, order_type="LIMIT", price="1540.00")

        assert refused.value.message_dict["quantity"] == ["Insufficient buying power: needs 15500.00, available 10.00."]

    def test_hostile_input_a_buy_back_of_a_short_on_another_product_needs_its_whole_cost(
        self, alice, fixed_prices, quarter
    ):
        short_ten(account := primary(alice), fixed_prices, room="10.00")
        request = OrderRequest(
            symbol="INFY", exchange="NSE", side="BUY", quantity=D(10), order_type="MARKET", product="CNC"
        )

        with pytest.raises(ValidationError, match=r"needs 15000\.00"):
            order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)


class TestShortSales:
    def test_a_short_sale_needs_its_charges_with_its_margin(self, alice, tenant, fixed_prices, quarter, settings):
        settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}
        fixed_prices["NSE:INFY"] = "1500.00"
        charges = fill_charges(
            tenant=tenant,
            currency="INR",
            exchange="NSE",
            product="MIS",
            instrument_type="EQ",
            side="SELL",
            quantity=D(10),
            price=D("1500.00"),
        ).total
        account = primary(alice)
        account.cash = D("3750.00")  # the margin, 10 x 1500 x 0.25, and not its charges
        account.save()

        with pytest.raises(ValidationError) as refused:
            placed(account, side="SELL", quantity=10)
        account.cash += charges
        account.save()
        order = placed(account, side="SELL", quantity=10)

        assert charges > 0
        assert refused.value.message_dict["quantity"] == [
            f"Insufficient buying power: needs {D('3750.00') + charges}, available 3750.00."
        ]
        assert order.status == "COMPLETE"
        account.refresh_from_db()
        assert paper_buying_power(account=account, marks=INFY) == 0

    def test_a_resting_short_sale_below_the_mark_reserves_its_margin_at_the_mark_and_its_loss_at_its_limit(
        self, alice, fixed_prices, quarter
    ):
        # 5 fill at the 1500 bid; 5 rest at 1499, margined at the mark and losing 1 each once they fill there.
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1500.00", 5)])
        account = primary(alice)

        order = placed(account, side="SELL", quantity=10, order_type="LIMIT", price="1499.00")

        assert (order.status, order.filled_quantity) == ("OPEN", 5)
        # 5 x 1500 x 0.25, not 5 x 1499 x 0.25; and 5 x (1500 - 1499)
        assert reserved_cash(account=account, marks=INFY) == D("1880.00")
        account.refresh_from_db()
        before = paper_buying_power(account=account, marks=INFY)
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1499.00", 100)])  # a newer quote, bids at the limit
        assert paper_orders_match(account_id=account.pk) == 1
        order.refresh_from_db()
        assert (order.status, order.filled_quantity) == ("COMPLETE", 10)
        account.refresh_from_db()
        assert paper_buying_power(account=account, marks=INFY) == before

    def test_resting_short_sales_reserve_each_at_its_own_price_what_the_check_found(self, alice, fixed_prices, quarter):
        fixed_prices["NSE:INFY"] = "1500.00"  # no depth: limits above the last price rest
        account = primary(alice)
        placed(account, side="SELL", quantity=10, order_type="LIMIT", price="1600.00")
        account.refresh_from_db()
        before = paper_buying_power(account=account, marks=INFY)

        placed(account, side="SELL", quantity=10, order_type="LIMIT", price="1700.00")

        # 4,000 + 4,250, not 20 x 1700 x 0.25: the second took what its check found, 4,250, and no more.
        assert reserved_cash(account=account, marks=INFY) == D("8250.00")
        assert paper_buying_power(account=account, marks=INFY) == before - D("4250.00")

    def test_a_short_sold_into_bids_below_the_mark_needs_the_loss_it_takes_at_once(self, alice, fixed_prices, quarter):
        # The margin, 10 x 1500 x 0.25 = 3,750, and the fill at 1450 marked at 1500: 10 x 50 = 500 more.
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1450.00", 100)])
        account = primary(alice)
        account.cash = D("3750.00")
        account.save()

        with pytest.raises(ValidationError) as refused:
            placed(account, side="SELL", quantity=10)
        account.cash = D("4250.00")
        account.save()
        order = placed(account, side="SELL", quantity=10)

        assert refused.value.message_dict["quantity"] == [
            "Insufficient buying power: needs 4250.00, available 3750.00."
        ]
        assert (order.status, order.average_price) == ("COMPLETE", D("1450"))
        account.refresh_from_db()
        assert paper_buying_power(account=account, marks=INFY) == 0

    def test_a_short_walking_the_bids_down_needs_the_loss_at_its_lowest_slice(self, alice, fixed_prices, quarter):
        # A marketable limit sell walks 1490 and 1450 (average 1470), never below its limit of 1400.
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1490.00", 5), ("1450.00", 5), ("1300.00", 100)])
        account = primary(alice)
        account.cash = D("4050.00")  # 3,750 margin and 10 x (1500 - 1470)
        account.save()

        order = placed(account, side="SELL", quantity=10, order_type="LIMIT", price="1400.00")

        assert (order.status, order.average_price) == ("COMPLETE", D("1470"))
        account.refresh_from_db()
        assert paper_buying_power(account=account, marks=INFY) == 0

    def test_a_market_short_without_depth_needs_its_slippage_as_a_loss(self, alice, fixed_prices, quarter, settings):
        settings.THOR_PAPER_SLIPPAGE_BPS = 100  # a market sell fills at 1485
        fixed_prices["NSE:INFY"] = "1500.00"
        account = primary(alice)
        account.cash = D("3899.00")
        account.save()

        with pytest.raises(ValidationError) as refused:
            placed(account, side="SELL", quantity=10)
        account.cash = D("3900.00")
        account.save()
        order = placed(account, side="SELL", quantity=10)

        assert refused.value.message_dict["quantity"] == [
            "Insufficient buying power: needs 3900.00, available 3899.00."
        ]
        assert (order.status, order.average_price) == ("COMPLETE", D("1485"))
        account.refresh_from_db()
        assert paper_buying_power(account=account, marks=INFY) == 0

    def test_a_resting_limit_short_below_the_mark_is_checked_for_what_it_reserves(self, alice, fixed_prices, quarter):
        # The bids (1400) do not cross its limit (1450): it rests, reserving 3,750 and 10 x (1500 - 1450).
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1400.00", 100)])
        account = primary(alice)
        account.cash = D("4249.99")
        account.save()

        with pytest.raises(ValidationError, match=r"needs 4250\.00, available 4249\.99"):
            placed(account, side="SELL", quantity=10, order_type="LIMIT", price="1450.00")
        account.cash = D("4250.00")
        account.save()
        order = placed(account, side="SELL", quantity=10, order_type="LIMIT", price="1450.00")

        assert order.status == "OPEN"
        assert reserved_cash(account=account, marks=INFY) == D("4250.00")
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1450.00", 100)])
        assert paper_orders_match(account_id=account.pk) == 1
        order.refresh_from_db()
        assert order.status == "COMPLETE"
        account.refresh_from_db()
        assert paper_buying_power(account=account, marks=INFY) == 0

    def test_hostile_input_a_sell_at_the_lowest_tick_into_deep_bids_is_asked_for_all_it_would_lose(
        self, alice, fixed_prices, quarter
    ):
        # Marketable at 0.05, it takes both bids at their average, 750.00 (on the tick, down): 3,750 margin at
        # the mark and 10 x (1500 - 750) lost at once. Valued at the higher of its prices only, 3,750 would do.
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1500.00", 5), ("0.05", 5)])
        account = primary(alice)
        account.cash = D("5000.00")
        account.save()

        with pytest.raises(ValidationError) as refused:
            placed(account, side="SELL", quantity=10, order_type="LIMIT", price="0.05")

        assert refused.value.message_dict["quantity"] == [
            "Insufficient buying power: needs 11250.00, available 5000.00."
        ]

        assert not account.orders.exists()
