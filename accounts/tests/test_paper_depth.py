"""Paper fills from the quote's depth.

A market order walks the levels on the other side of the book, filling at their quantity-weighted average (on
the tick, against the trader) as far as the book goes; the rest stays OPEN and fills at later matching passes
from newer quotes (an IOC order's rest is cancelled). A limit order fills when the book crosses it, at the
levels within its limit. F&O fills in whole lots. A quote without depth fills as before: whole, at the last
price plus slippage. Each fill is its own audit row and moves cash, position and charges; the order's
reservation covers only its unfilled rest.

The sandbox's Kite book (an equity's: five levels a tick apart on each side of the last price, 100 each) is
the book of the end-to-end tests; the fixed price table carries hand-made books for the rest, and a hostile
book comes over HTTP from a Kite that answers it.
"""

import re
from decimal import Decimal

import pytest
import requests
import responses

from accounts.models import Order, OrderEvent, TradingAccount
from accounts.paper import paper_orders_match
from accounts.paper_buying_power import reserved_cash
from accounts.paper_depth import Book
from accounts.streams import ORDER_UPDATE, POSITION_UPDATE, stream_messages_since
from accounts.tests.conftest import place
from brokers.adapters.types import DepthLevel
from market.quotes import FRESH_SECONDS
from market.tests.fixtures import NIFTY_FUTURE, NIFTY_LOT, NIFTY_OPTION

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def account(alice):
    account = TradingAccount.objects.get(user=alice, is_primary=True)
    account.cash = D("10000000.00")
    account.save()
    return account


def fills(order_id: int) -> list[OrderEvent]:
    return list(OrderEvent.objects.filter(order_id=order_id, kind="filled").order_by("id"))


def _level(price: str, quantity: int) -> DepthLevel:
    return DepthLevel(D(price), quantity)


def booked(last_price, *, asks=(), bids=()) -> dict:
    """A fixed-table entry with a book: (price, quantity) levels, best first."""
    return {
        "last_price": str(last_price),
        "asks": [[str(price), quantity] for price, quantity in asks],
        "bids": [[str(price), quantity] for price, quantity in bids],
    }


@pytest.mark.e2e
class TestTheSandboxBook:
    @pytest.fixture
    def pin(self, sandbox, market_data, time_passes):
        """Pins INFY's last price at the sandbox (its book follows it); the next read quotes it anew."""

        def pin(price):
            requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": price}, timeout=5).raise_for_status()
            time_passes(FRESH_SECONDS)

        return pin

    def test_a_market_order_larger_than_the_best_level_fills_across_levels_at_their_average(
        self, alice_client, account, pin
    ):
        pin(1500.0)  # asks: 1500.05, 1500.10, 1500.15, ... 100 each

        response = place(alice_client, quantity=250)

        assert response.status_code == 201, response.json()
        body = response.json()
        # (100 x 1500.05 + 100 x 1500.10 + 50 x 1500.15) / 250 = 1500.09, up to the tick for a buy.
        assert (body["status"], body["filled_quantity"], body["average_price"]) == ("COMPLETE", 250, "1500.1000")
        [fill] = fills(body["id"])
        assert fill.broker_response["fill"]["depth"] == [
            {"price": "1500.05", "quantity": "100"},
            {"price": "1500.1", "quantity": "100"},
            {"price": "1500.15", "quantity": "50"},
        ]
        account.refresh_from_db()
        assert account.cash == D("10000000.00") - 250 * D("1500.10")

    def test_what_the_book_cannot_fill_rests_and_fills_from_a_later_quote(self, alice_client, account, pin):
        pin(1500.0)

        body = place(alice_client, quantity=700).json()

        # Five levels of 100: 500 fill at 1500.15 (their average), 200 wait.
        assert (body["status"], body["filled_quantity"], body["average_price"]) == ("OPEN", 500, "1500.1500")
        assert reserved_cash(account=account) == 200 * D("1500.15")
        assert paper_orders_match() == 0  # the same quote never fills an order twice
        assert Order.objects.get(pk=body["id"]).filled_quantity == 500

        pin(1499.0)  # a newer quote: asks from 1499.05
        paper_orders_match()

        order = Order.objects.get(pk=body["id"])
        assert (order.status, order.filled_quantity) == ("COMPLETE", 700)
        # The rest's 200: 100 at 1499.05 and 100 at 1499.10, 1499.075 up to the tick.
        assert [
            (f.broker_response["fill"]["quantity"], f.broker_response["fill"]["price"]) for f in fills(order.pk)
        ] == [
            ("500", "1500.15"),
            ("200", "1499.10"),
        ]
        assert order.average_price == (500 * D("1500.15") + 200 * D("1499.10")) / 700 == D("1499.85")
        assert account.paper_positions.get().quantity == 700
        assert reserved_cash(account=account) == 0

    def test_an_ioc_orders_rest_is_cancelled(self, alice_client, account, pin):
        pin(1500.0)

        body = place(alice_client, quantity=700, validity="IOC").json()

        assert (body["status"], body["filled_quantity"]) == ("CANCELLED", 500)
        assert body["status_message"] == "IOC order: the rest not filled."
        assert account.paper_positions.get().quantity == 500
        assert reserved_cash(account=account) == 0

    def test_a_limit_order_fills_when_the_book_crosses_it_at_the_levels_within_its_limit(
        self, alice_client, account, pin
    ):
        pin(1500.0)
        # Asks 1500.05 and 1500.10 are within the limit: 200 of 300 fill, at no more than the limit.
        body = place(alice_client, quantity=300, order_type="LIMIT", price="1500.10").json()
        assert (body["status"], body["filled_quantity"], body["average_price"]) == ("OPEN", 200, "1500.1000")
        # The rest is reserved at its limit.
        assert reserved_cash(account=account) == 100 * D("1500.10")

        pin(1501.0)  # the book moves away: nothing within the limit
        paper_orders_match()
        assert Order.objects.get(pk=body["id"]).filled_quantity == 200

        pin(1499.0)  # and back across it
        paper_orders_match()
        order = Order.objects.get(pk=body["id"])
        assert (order.status, order.filled_quantity) == ("COMPLETE", 300)
        assert fills(order.pk)[-1].broker_response["fill"]["price"] == "1499.05"

    def test_a_sell_limit_rests_while_the_bids_are_below_it(self, alice_client, account, pin):
        pin(1500.0)
        place(alice_client, quantity=50)

        # The last price is at the limit, but the best bid (1499.95) is not: the book does not cross it.
        body = place(alice_client, quantity=50, transaction_type="SELL", order_type="LIMIT", price="1500.00").json()

        assert (body["status"], body["filled_quantity"]) == ("OPEN", 0)

    def test_partial_fills_show_in_the_order_list_and_on_the_stream(self, alice_client, account, pin):
        pin(1500.0)
        order_id = place(alice_client, quantity=700).json()["id"]

        listed = alice_client.get("/api/accounts/primary/orders").json()["results"][0]
        assert (listed["id"], listed["status"], listed["filled_quantity"], listed["average_price"]) == (
            order_id,
            "OPEN",
            500,
            "1500.1500",
        )
        pin(1499.0)
        paper_orders_match()

        messages, _ = stream_messages_since(account_id=account.pk, since_seq=0, limit=100)
        updates = [m["data"] for m in messages if m["type"] == ORDER_UPDATE]
        assert [(u["status"], u["filled_quantity"]) for u in updates] == [
            ("PENDING", 0),
            ("OPEN", 500),
            ("COMPLETE", 700),
        ]
        # Each fill moves the position: its update follows the order's.
        assert [m["type"] for m in messages].count(POSITION_UPDATE) == 2


class TestHandMadeBooks:
    def test_a_quote_without_depth_fills_whole_at_the_last_price_plus_slippage(self, alice_client, account, settings):
        settings.THOR_PAPER_SLIPPAGE_BPS = 10

        body = place(alice_client, quantity=5000).json()

        assert (body["status"], body["filled_quantity"], body["average_price"]) == ("COMPLETE", 5000, "1501.5000")

    def test_a_book_with_no_level_on_the_orders_side_fills_as_a_quote_without_depth(
        self, alice_client, account, fixed_prices
    ):
        fixed_prices["NSE:INFY"] = booked("1500.00", bids=[("1499.95", 10)])

        body = place(alice_client, quantity=50).json()

        assert (body["status"], body["filled_quantity"], body["average_price"]) == ("COMPLETE", 50, "1500.0000")

    def test_futures_fill_in_whole_lots(self, alice_client, account, instrument_master, fixed_prices):
        # 120 shown: one lot of 65 fills, the second waits for more.
        fixed_prices[f"NFO:{NIFTY_FUTURE}"] = booked("24000.00", asks=[("24000.05", 100), ("24000.10", 20)])

        body = place(alice_client, tradingsymbol=NIFTY_FUTURE, exchange="NFO", product="NRML", quantity=2 * NIFTY_LOT)
        body = body.json()

        assert (body["status"], body["filled_quantity"], body["average_price"]) == ("OPEN", NIFTY_LOT, "24000.0500")
        paper_orders_match()  # the table quotes anew: the same book again
        order = Order.objects.get(pk=body["id"])
        assert (order.status, order.filled_quantity) == ("COMPLETE", 2 * NIFTY_LOT)

    def test_an_orders_fills_are_charged_as_one_executed_order(
        self, alice_client, account, instrument_master, fixed_prices, settings
    ):
        settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}
        fixed_prices[f"NFO:{NIFTY_OPTION}"] = booked("180.00", asks=[("180.00", NIFTY_LOT)])
        option = {"tradingsymbol": NIFTY_OPTION, "exchange": "NFO", "product": "NRML", "quantity": 2 * NIFTY_LOT}
        order_id = place(alice_client, **option).json()["id"]  # one lot now
        paper_orders_match()  # the other from the next quote
        fixed_prices[f"NFO:{NIFTY_OPTION}"] = booked("180.00", asks=[("180.00", 1000)])
        whole = place(alice_client, **option).json()  # both lots at once

        order = Order.objects.get(pk=order_id)
        # Options pay a flat brokerage per order, not per fill: two fills cost what one fill of both does.
        assert (order.status, len(fills(order.pk))) == ("COMPLETE", 2)
        assert order.charges == D(whole["charges"])
        assert sum(D(fill.broker_response["charges"]["total"]) for fill in fills(order.pk)) == order.charges

    def test_a_triggered_stop_market_order_works_at_the_market_until_it_has_filled(
        self, alice_client, account, fixed_prices
    ):
        order_id = place(alice_client, quantity=100, order_type="SL-M", trigger_price="1510.00").json()["id"]
        fixed_prices["NSE:INFY"] = booked("1510.00", asks=[("1510.05", 30)])
        paper_orders_match()
        order = Order.objects.get(pk=order_id)
        assert (order.status, order.filled_quantity, order.average_price) == ("OPEN", 30, D("1510.05"))

        # Back below the trigger: triggered once, it goes on filling at the market.
        fixed_prices["NSE:INFY"] = booked("1505.00", asks=[("1505.05", 500)])
        paper_orders_match()

        order = Order.objects.get(pk=order_id)
        assert (order.status, order.filled_quantity) == ("COMPLETE", 100)
        assert order.average_price == (30 * D("1510.05") + 70 * D("1505.05")) / 100

    def test_a_partly_filled_order_changes_only_above_what_has_filled(self, alice_client, account, fixed_prices):
        fixed_prices["NSE:INFY"] = booked("1500.00", asks=[("1500.00", 60)])
        order_id = place(alice_client, quantity=100, order_type="LIMIT", price="1500.00").json()["id"]
        fixed_prices["NSE:INFY"] = "1501.00"  # the market moves away: the rest waits

        refused = alice_client.patch(f"/api/accounts/primary/orders/{order_id}", {"quantity": 60}, format="json")
        changed = alice_client.patch(f"/api/accounts/primary/orders/{order_id}", {"quantity": 80}, format="json")

        assert refused.status_code == 400 and "60 have filled" in str(refused.json())
        assert changed.status_code == 200, changed.json()
        assert reserved_cash(account=account) == 20 * D("1500.00")

    def test_slices_of_one_order_share_the_book(self, alice_client, account, instrument_master, fixed_prices):
        account.cash = D("100000000.00")
        account.save()
        # Above the freeze quantity (1800): slices of 1755 (27 lots) and 65, filled from one book of 1755 at the
        # best level.
        fixed_prices[f"NFO:{NIFTY_FUTURE}"] = booked("24000.00", asks=[("24000.00", 1755), ("24010.00", 1000)])

        body = place(alice_client, tradingsymbol=NIFTY_FUTURE, exchange="NFO", product="NRML", quantity=1820).json()

        children = sorted(body["children"], key=lambda child: child["id"])
        assert [(c["filled_quantity"], c["average_price"]) for c in children] == [
            (1755, "24000.0000"),
            (65, "24010.0000"),
        ]


class TestHostileBooks:
    def test_levels_that_are_not_positive_are_ignored(self):
        book = Book(
            [
                _level("1500.05", 0),
                _level("1500.10", -50),
                _level("0", 100),
                _level("-1", 100),
                _level("NaN", 100),
                _level("1500.20", 30),
            ],
            side="BUY",
        )

        take = book.peek(quantity=D(100))

        assert (take.quantity, take.price) == (D(30), D("1500.20"))

    def test_levels_priced_beyond_what_an_order_can_carry_are_ignored(self):
        book = Book([_level("1E+30", 100), _level("10000000000", 100), _level("9999999999.95", 1)], side="BUY")

        take = book.peek(quantity=D(100))

        assert (take.quantity, take.price, book.worst) == (D(1), D("9999999999.95"), D("9999999999.95"))

    def test_levels_sent_out_of_order_are_taken_best_first(self):
        book = Book([_level("1499.90", 10), _level("1500.00", 10)], side="SELL")

        assert book.peek(quantity=D(10)).price == D("1500.00")

    @pytest.mark.e2e
    def test_a_hostile_book_from_the_broker_fills_only_from_its_sound_levels(
        self, alice_client, account, sandbox, market_data
    ):
        quote = {
            "instrument_token": 408065,
            "last_price": 1500.0,
            "depth": {
                "buy": [{"price": 1499.95, "quantity": 10, "orders": 1}],
                "sell": [
                    {"price": 1500.05, "quantity": -500, "orders": 1},
                    {"price": 1500.10, "quantity": 0, "orders": 0},
                    {"price": -3, "quantity": 500, "orders": 1},
                    {"price": 1500.25, "quantity": 40, "orders": 1},
                ],
            },
        }
        with responses.RequestsMock(assert_all_requests_are_fired=False) as kite:
            kite.add(
                responses.GET,
                re.compile(rf"{re.escape(sandbox.url)}/quote\b.*"),
                json={"status": "success", "data": {"NSE:INFY": quote}},
            )
            kite.add_passthru(sandbox.url)

            body = place(alice_client, quantity=100).json()

        assert (body["status"], body["filled_quantity"], body["average_price"]) == ("OPEN", 40, "1500.2500")
