"""What a paper order is checked on is what it will later need at its fill (issue 21).

A resting buy reserves its charges with its cost: a later order cannot take the room they need, so the resting
buy is never refused at its fill for funds the check had let it count on. A marketable limit buy is valued at
its walk up the asks within its limit (what they do not give it at its limit, where it rests): valued at the
last price, a buy that walks up past it would pass the check and be refused at fill. A limit buy below the best
ask rests at its limit and is valued there, not at a lower last price. With charges off, reservations are what
they always were.

The property over random sequences of orders is test_paper_reserve_property; shorts, test_paper_reserve_shorts.
"""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.charges import fill_charges
from accounts.models import Order
from accounts.orders import order_place
from accounts.paper import paper_orders_match
from accounts.paper_buying_power import paper_buying_power, reserved_cash
from accounts.selectors import funds_get
from accounts.tests.conftest import place
from accounts.tests.test_paper_valuation import START, booked, primary, untouched
from brokers.adapters.types import OrderRequest
from market.tests.fixtures import NIFTY_FUTURE, NIFTY_LOT

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def charged(settings):
    settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}


def intraday_buy_charges(tenant, *, quantity, price) -> Decimal:
    return fill_charges(
        tenant=tenant,
        currency="INR",
        exchange="NSE",
        product="MIS",
        instrument_type="EQ",
        side="BUY",
        quantity=D(quantity),
        price=D(price),
    ).total


class TestRestingBuysReserveTheirCharges:
    def test_a_later_buy_cannot_take_the_room_a_resting_buys_charges_need_and_the_resting_buy_fills(
        self, alice_client, alice, tenant, fixed_prices, charged
    ):
        fixed_prices["NSE:INFY"] = "1000.00"
        resting_charges = intraday_buy_charges(tenant, quantity=90, price="990.00")
        later_charges = intraday_buy_charges(tenant, quantity=10, price="1000.00")
        # Room for the resting buy's cost and the later buy with its charges, and 10 more: not for both charges.
        account = primary(alice)
        account.cash = D("89100.00") + D("10000.00") + later_charges + D("10.00")
        account.save()
        resting = place(alice_client, quantity=90, order_type="LIMIT", price="990.00", product="MIS")
        assert resting.status_code == 201 and resting.json()["status"] == "OPEN", resting.json()

        later = place(alice_client, quantity=10, product="MIS")

        available = account.cash - D("89100.00") - resting_charges
        assert later.status_code == 400, later.json()
        assert later.json()["errors"]["quantity"] == [
            f"Insufficient buying power: needs {D('10000.00') + later_charges}, available {available}."
        ]
        assert funds_get(account=account).data.buying_power == available
        fixed_prices["NSE:INFY"] = "990.00"  # the price crosses the resting limit
        assert paper_orders_match(account_id=account.pk) == 1
        filled = Order.objects.get(pk=resting.json()["id"])
        assert (filled.status, filled.filled_quantity, filled.charges) == ("COMPLETE", 90, resting_charges)
        account.refresh_from_db()
        assert account.cash == D("10010.00") + later_charges - resting_charges >= 0

    def test_a_partly_filled_buy_reserves_the_charges_its_rest_adds(self, alice, tenant, fixed_prices, charged):
        # 10 of 100 fill from the book at 1000; the 90 left rest at the limit, with what they add in charges.
        fixed_prices["NSE:INFY"] = booked("1000.00", asks=[("1000.00", 10), ("1100.00", 500)])
        account = primary(alice)
        account.cash = D("200000.00")
        account.save()
        request = OrderRequest(
            symbol="INFY", exchange="NSE", side="BUY", quantity=D(100), order_type="LIMIT", product="MIS", price=D(1050)
        )

        order = order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)

        assert (order.status, order.filled_quantity) == ("OPEN", 10)
        # As one executed order: brokerage is capped at 20 for the whole (the 10 filled paid 3.00 of it).
        whole = intraday_buy_charges(tenant, quantity=100, price="1045.00")
        assert reserved_cash(account=account) == D("94500.00") + whole - order.charges

    def test_with_charges_off_a_resting_buy_reserves_its_cost_alone(self, alice_client, alice, fixed_prices):
        place(alice_client, quantity=90, order_type="LIMIT", price="990.00", product="MIS")

        assert reserved_cash(account=primary(alice)) == D("89100.00")

    def test_reserving_charges_costs_no_query_per_order(self, alice_client, alice, fixed_prices, settings):
        account = primary(alice)
        place(alice_client, quantity=1, order_type="LIMIT", price="990.00")
        queries = {}
        for enabled, more in ((False, 0), (True, 0), (True, 3)):
            for _ in range(more):
                place(alice_client, quantity=1, order_type="LIMIT", price="990.00")
                place(alice_client, tradingsymbol="SBIN", quantity=1, order_type="LIMIT", price="790.00")
            settings.THOR_PAPER_CHARGES = {"enabled": enabled, "tenants": {}}
            reserved_cash(account=account)  # the instrument master's process cache warm, as in service
            with CaptureQueriesContext(connection) as captured:
                reserved_cash(account=account)
            queries[(enabled, more)] = len(captured)

        assert account.orders.filter(status=Order.Status.OPEN).count() == 7
        assert queries[(False, 0)] == queries[(True, 0)] == queries[(True, 3)]


class TestMarketableLimitBuysValuedAtTheirWalk:
    def test_a_limit_buy_whose_walk_up_to_its_limit_costs_more_than_the_cash_is_a_400_naming_what_it_needs(
        self, alice_client, alice, fixed_prices
    ):
        # 60 at the last price is 90,000; up the asks within 1800: 10 at 1500 and 50 at 1800, 105,000.
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 10), ("1800.00", 100)])

        response = place(alice_client, quantity=60, order_type="LIMIT", price="1800.00")

        assert response.status_code == 400, response.json()
        assert response.json()["errors"]["quantity"] == [
            "Insufficient buying power: needs 105000.00, available 100000.00."
        ]
        assert untouched(primary(alice))

    def test_a_limit_buy_that_fits_fills_across_the_levels_within_its_limit(self, alice_client, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 10), ("1800.00", 100), ("1900.00", 100)])

        response = place(alice_client, quantity=50, order_type="LIMIT", price="1800.00")

        assert response.status_code == 201, response.json()
        body = response.json()
        assert (body["status"], body["filled_quantity"], body["average_price"]) == ("COMPLETE", 50, "1740.0000")
        assert primary(alice).cash == START - D("87000.00")

    def test_what_the_asks_within_the_limit_do_not_fill_is_valued_at_the_limit_where_it_rests(
        self, alice_client, alice, fixed_prices
    ):
        # 10 at 1500 fill; the rest waits at 1700 (the 1800s are beyond it): 15,000 + 50 x 1700 = 100,000 for 60,
        # 1666.67 a share, on the tick 1666.70: 100,002. 59 cost 98,300: they fit, and 49 rest reserving 83,300.
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 10), ("1800.00", 100)])

        refused = place(alice_client, quantity=60, order_type="LIMIT", price="1700.00")
        placed = place(alice_client, quantity=59, order_type="LIMIT", price="1700.00")

        assert refused.json()["errors"]["quantity"] == [
            "Insufficient buying power: needs 100002.00, available 100000.00."
        ]
        assert placed.status_code == 201 and (placed.json()["status"], placed.json()["filled_quantity"]) == ("OPEN", 10)
        assert reserved_cash(account=primary(alice)) == D("83300.00")

    def test_a_limit_buy_below_the_best_ask_is_valued_at_its_limit_where_it_rests(
        self, alice_client, alice, fixed_prices
    ):
        # Not marketable: it rests at 1550 (the last price, 1500, is no ask), reserving 66 x 1550 = 102,300.
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1600.00", 100)])

        refused = place(alice_client, quantity=66, order_type="LIMIT", price="1550.00")
        placed = place(alice_client, quantity=64, order_type="LIMIT", price="1550.00")

        assert refused.json()["errors"]["quantity"] == [
            "Insufficient buying power: needs 102300.00, available 100000.00."
        ]
        assert placed.status_code == 201 and placed.json()["status"] == "OPEN", placed.json()
        assert reserved_cash(account=primary(alice)) == D("99200.00")

    def test_hostile_levels_do_not_make_a_limit_buy_look_cheap(self, alice_client, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = booked(
            "1500.00",
            asks=[("0", 100), ("-1", 100), ("NaN", 100), ("1500.00", -50), ("1500.03", 10), ("1800.00", 100)],
        )

        response = place(alice_client, quantity=60, order_type="LIMIT", price="1800.00")

        # The 60 take 10 at the off-tick 1500.03 and 50 at 1800: 1750.005 a share, on the tick 1750.05, as the
        # fill pays it: 105,003.
        assert response.json()["errors"]["quantity"] == [
            "Insufficient buying power: needs 105003.00, available 100000.00."
        ]

    def test_a_marketable_limit_sell_keeps_the_higher_of_its_limit_the_last_price_and_the_bids(
        self, alice_client, alice, tenant, fixed_prices
    ):
        tenant.paper_margin_rates = {"MIS": "0.25"}
        tenant.save()
        account = primary(alice)
        account.cash = D("3800.00")  # 3,750 at the last price would fit; 10 at the 1600 bid, 4,000, does not
        account.save()
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1600.00", 100)])

        response = place(
            alice_client, transaction_type="SELL", quantity=10, product="MIS", order_type="LIMIT", price="1450.00"
        )

        assert response.json()["errors"]["quantity"] == ["Insufficient buying power: needs 4000.00, available 3800.00."]


class TestRestingLimitBuysValuedAtTheirLimit:
    """A limit buy below the best ask rests at its limit and reserves there, though the last price is lower: the
    check values it at its limit, else it would admit a reservation the account cannot cover."""

    def request(self, *, quantity=60, price="1550.00") -> OrderRequest:
        return OrderRequest(
            symbol="INFY",
            exchange="NSE",
            side="BUY",
            quantity=D(quantity),
            order_type="LIMIT",
            product="MIS",
            price=D(price),
        )

    def test_a_resting_buy_whose_reservation_exceeds_the_buying_power_is_refused_before_anything_is_written(
        self, alice, tenant, fixed_prices, charged
    ):
        # Last 1500 < limit 1550 < best ask 1600. 60 at the last price is 90,000; it rests reserving 93,000 and
        # its charges at 1550: the account has room for the first and not the second.
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1600.00", 100)])
        needed = D("93000.00") + intraday_buy_charges(tenant, quantity=60, price="1550.00")
        account = primary(alice)
        account.cash = D("91000.00")
        account.save()

        with pytest.raises(ValidationError) as refused:
            order_place(account=account, request=self.request(), idempotency_key=None, fingerprint="", actor=None)

        assert refused.value.message_dict["quantity"] == [
            f"Insufficient buying power: needs {needed}, available 91000.00."
        ]
        assert untouched(account, cash=D("91000.00"))

    def test_one_that_fits_rests_reserving_what_it_was_checked_at_and_fills_when_the_price_reaches_its_limit(
        self, alice, tenant, fixed_prices, charged
    ):
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1600.00", 100)])
        charges = intraday_buy_charges(tenant, quantity=60, price="1550.00")
        account = primary(alice)
        account.cash = D("93000.00") + charges
        account.save()

        order = order_place(account=account, request=self.request(), idempotency_key=None, fingerprint="", actor=None)

        assert (order.status, order.filled_quantity) == ("OPEN", 0)
        assert paper_buying_power(account=account, marks={}) == 0
        fixed_prices["NSE:INFY"] = "1550.00"  # the market comes up to the limit
        assert paper_orders_match(account_id=account.pk) == 1
        order.refresh_from_db()
        assert (order.status, order.average_price, order.charges) == ("COMPLETE", D("1550"), charges)
        account.refresh_from_db()
        assert account.cash == 0

    def test_without_a_book_a_limit_at_or_above_the_last_price_is_valued_at_the_last_price_it_fills_at(
        self, alice, fixed_prices
    ):
        # No depth: it fills whole at the last price at once, so 66 x 1500 = 99,000 fits, though 66 x 1550 does not.
        fixed_prices["NSE:INFY"] = "1500.00"
        account = primary(alice)

        order = order_place(
            account=account, request=self.request(quantity=66), idempotency_key=None, fingerprint="", actor=None
        )

        assert (order.status, order.average_price) == ("COMPLETE", D("1500"))

    def test_a_stop_limit_buy_is_still_valued_at_its_limit(self, alice, fixed_prices):
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1600.00", 100)])
        request = OrderRequest(
            symbol="INFY",
            exchange="NSE",
            side="BUY",
            quantity=D(66),
            order_type="SL",
            product="MIS",
            price=D("1550.00"),
            trigger_price=D("1540.00"),
        )

        with pytest.raises(ValidationError, match=r"needs 102300\.00"):
            order_place(account=primary(alice), request=request, idempotency_key=None, fingerprint="", actor=None)


class TestARestingMarketOrderReservesItsCost:
    def test_a_market_buy_the_book_has_not_one_lot_for_rests_reserving_its_worst_ask_and_keeps_the_room(
        self, alice_client, alice, instrument_master, fixed_prices
    ):
        future = f"NFO:{NIFTY_FUTURE}"
        # The asks show one lot less one at 24010, over a last price of 24000: the buy rests whole.
        fixed_prices[future] = booked("24000.00", asks=[("24010.00", NIFTY_LOT - 1)])
        account = primary(alice)
        account.cash = NIFTY_LOT * D("24010.00") + D("200000.00")  # room for 200,000 besides
        account.save()

        resting = place(alice_client, tradingsymbol=NIFTY_FUTURE, exchange="NFO", product="NRML", quantity=NIFTY_LOT)

        body = resting.json()
        assert resting.status_code == 201 and body["status"] == "OPEN" and body["filled_quantity"] == 0, body
        # It reserves what the check valued it at, the worst ask shown (it reserved nothing before).
        assert reserved_cash(account=account) == NIFTY_LOT * D("24010.00")
        later = place(alice_client, quantity=200, order_type="LIMIT", price="1500.00", product="MIS")  # 300,000
        assert later.status_code == 400, later.json()
        fixed_prices[future] = booked("24000.00", asks=[("24010.00", NIFTY_LOT)])  # a lot shows at the same price
        assert paper_orders_match(account_id=account.pk) == 1
        filled = Order.objects.get(pk=body["id"])
        assert (filled.status, filled.filled_quantity, filled.average_price) == ("COMPLETE", NIFTY_LOT, D("24010"))
        account.refresh_from_db()
        assert account.cash == D("200000.00")

    def test_a_stop_market_buy_triggered_at_once_rests_reserving_what_it_filled_at_not_its_trigger(
        self, alice, fixed_prices
    ):
        # It triggers at 1500 and takes the one ask at 1500.05; its other share rests at the market, which the
        # check valued at 1500.05 too. Reserved at its trigger, 1500, it would leave 0.05 for another order to take
        # and then be refused at its fill from the same book.
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.05", 1)])
        account = primary(alice)
        account.cash = D("3000.10")
        account.save()
        request = OrderRequest(
            symbol="INFY",
            exchange="NSE",
            side="BUY",
            quantity=D(2),
            order_type="SL-M",
            product="MIS",
            trigger_price=D("1500.00"),
        )

        order = order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)

        assert (order.status, order.filled_quantity) == ("OPEN", 1)
        assert reserved_cash(account=account) == D("1500.05")
        account.refresh_from_db()
        assert paper_buying_power(account=account, marks={}) == 0
        assert paper_orders_match(account_id=account.pk) == 1  # a newer quote of the same book
        order.refresh_from_db()
        assert (order.status, order.average_price) == ("COMPLETE", D("1500.05"))
