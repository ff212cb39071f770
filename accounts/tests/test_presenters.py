"""accounts.presenters: how an order, a position, a holding and funds look, in the API and on the socket.

Each presenter is held to the Output serializer that documents it in /api/schema/ (same keys, same order,
the same bytes once rendered), then its rules are spelled out one by one, odd and hostile values included.
No database: presenters only read attributes.
"""

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from accounts import presenters
from accounts.api import serializers
from accounts.models import Order
from accounts.orders.batch import BatchLeg, BatchResult
from brokers.adapters.types import Funds, Holding, Position
from thor import money

CREATED = datetime(2026, 3, 2, 9, 15, 0, 123456, tzinfo=UTC)
UPDATED = datetime(2026, 3, 2, 9, 15, 1, tzinfo=UTC)
render = JSONRenderer().render


def an_order(**overrides) -> Order:
    fields = {
        "pk": 41,
        "account_id": 7,
        "client_order_id": "thor-41",
        "broker_order_id": "250302000000041",
        "symbol": "INFY",
        "exchange": "NSE",
        "side": "BUY",
        "quantity": Decimal("10.0000"),
        "order_type": "LIMIT",
        "product": "CNC",
        "price": Decimal("1400.0500"),
        "trigger_price": None,
        "validity": "DAY",
        "tag": "thor-41",
        "algo_id": "41230",
        "status": "OPEN",
        "status_message": "",
        "filled_quantity": Decimal("0.0000"),
        "average_price": None,
        "created_at": CREATED,
        "updated_at": UPDATED,
    }
    return Order(**{**fields, **overrides})


def a_position(**overrides) -> Position:
    fields = {
        "symbol": "INFY",
        "exchange": "NSE",
        "product": "CNC",
        "quantity": Decimal("10"),
        "average_price": Decimal("1400.05"),
        "last_price": Decimal("1500"),
        "realised_pnl": Decimal("0"),
        "unrealised_pnl": Decimal("999.50"),
        "day_pnl": Decimal("999.5"),
        "value": Decimal("15000"),
    }
    return Position(**{**fields, **overrides})


def a_holding(**overrides) -> Holding:
    fields = {
        "symbol": "INFY",
        "exchange": "NSE",
        "quantity": Decimal("10"),
        "average_price": Decimal("1400.05"),
        "last_price": Decimal("1500"),
        "pnl": Decimal("999.5"),
        "day_change": Decimal("-12.345"),
        "value": Decimal("15000"),
        "isin": "INE009A01021",
    }
    return Holding(**{**fields, **overrides})


def some_funds(**overrides) -> Funds:
    fields = {
        "currency": "INR",
        "cash": Decimal("100000"),
        "available": Decimal("85999.505"),
        "utilised": Decimal("14000.495"),
        "buying_power": Decimal("85999.50"),
        "net_liquidation": Decimal("115000.0000"),
    }
    return Funds(**{**fields, **overrides})


def a_batch() -> BatchResult:
    return BatchResult(
        status="partial",
        legs=[
            BatchLeg(index=0, outcome="placed", order=an_order()),
            BatchLeg(index=1, outcome="rejected", order=an_order(pk=42, status="REJECTED"), message="No such symbol."),
        ],
    )


# (presenter, the serializer documenting its answer, what it presents)
DOCUMENTED = [
    pytest.param(presenters.order_data, serializers.OrderOutputSerializer, an_order, id="order"),
    pytest.param(presenters.batch_data, serializers.BatchOutputSerializer, a_batch, id="batch"),
    pytest.param(presenters.position_data, serializers.PositionOutputSerializer, a_position, id="position"),
    pytest.param(presenters.holding_data, serializers.HoldingOutputSerializer, a_holding, id="holding"),
    pytest.param(presenters.funds_data, serializers.FundsOutputSerializer, some_funds, id="funds"),
]


class TestEachPresenterIsWhatItsSchemaDocuments:
    @pytest.mark.parametrize(("present", "serializer", "make"), DOCUMENTED)
    def test_the_same_keys_in_the_same_order(self, present, serializer, make):
        assert list(present(make())) == list(serializer().fields)

    @pytest.mark.parametrize(("present", "serializer", "make"), DOCUMENTED)
    def test_the_same_bytes_as_the_serializer_renders(self, present, serializer, make):
        assert render(present(make())) == render(serializer(make()).data)

    @pytest.mark.parametrize(("present", "serializer", "make"), DOCUMENTED)
    def test_json_ready_without_help(self, present, serializer, make):
        # No Decimal, no datetime: any encoder takes it (the channel layer's msgpack, the Redis cache).
        assert json.loads(json.dumps(present(make()))) == present(make())

    def test_lists_present_each_item(self):
        positions, holdings, orders = [a_position(), a_position(symbol="SBIN")], [a_holding()], [an_order()]
        assert presenters.positions_data(positions) == [presenters.position_data(p) for p in positions]
        assert presenters.holdings_data(holdings) == [presenters.holding_data(h) for h in holdings]
        assert presenters.orders_data(orders) == [presenters.order_data(o) for o in orders]
        assert presenters.positions_data([]) == []


class TestOrder:
    def test_an_order_as_clients_read_it(self):
        assert presenters.order_data(an_order()) == {
            "id": 41,
            "client_order_id": "thor-41",
            "broker_order_id": "250302000000041",
            "tradingsymbol": "INFY",
            "exchange": "NSE",
            "transaction_type": "BUY",
            "quantity": 10,
            "order_type": "LIMIT",
            "product": "CNC",
            "price": "1400.0500",
            "trigger_price": None,
            "validity": "DAY",
            "tag": "thor-41",
            "algo_id": "41230",
            "status": "OPEN",
            "status_message": "",
            "filled_quantity": 0,
            "average_price": None,
            "charges": None,
            "created_at": "2026-03-02T09:15:00.123456Z",
            "updated_at": "2026-03-02T09:15:01Z",
            "children": [],
        }

    def test_a_sliced_order_shows_each_slice_with_its_fills(self):
        parent = an_order(quantity=Decimal("1875"), status="OPEN", filled_quantity=Decimal("1800"))
        parent.child_orders = [
            an_order(
                pk=42,
                quantity=Decimal("1800"),
                status="COMPLETE",
                filled_quantity=Decimal("1800"),
                average_price=Decimal("24500.05"),
            ),
            an_order(pk=43, quantity=Decimal("75"), status="REJECTED", status_message="RMS: margin exceeds."),
        ]

        data = presenters.order_data(parent)

        assert data["children"] == [
            {
                "id": 42,
                "broker_order_id": "250302000000041",
                "quantity": 1800,
                "status": "COMPLETE",
                "status_message": "",
                "filled_quantity": 1800,
                "average_price": "24500.0500",
            },
            {
                "id": 43,
                "broker_order_id": "250302000000041",
                "quantity": 75,
                "status": "REJECTED",
                "status_message": "RMS: margin exceeds.",
                "filled_quantity": 0,
                "average_price": None,
            },
        ]
        assert render(data) == render(serializers.OrderOutputSerializer(parent).data)

    def test_a_price_not_given_is_null_never_zero(self):
        data = presenters.order_data(an_order(order_type="MARKET", price=None, average_price=None))
        assert (data["price"], data["trigger_price"], data["average_price"]) == (None, None, None)

    def test_prices_on_the_four_decimal_tick_rounded_half_up(self):
        data = presenters.order_data(
            an_order(price=Decimal("1400.00005"), trigger_price=Decimal("1399.99994"), average_price=Decimal("7"))
        )
        assert (data["price"], data["trigger_price"], data["average_price"]) == ("1400.0001", "1399.9999", "7.0000")

    def test_quantities_are_whole_numbers(self):
        data = presenters.order_data(an_order(quantity=Decimal("10.5000"), filled_quantity=Decimal("2.4999")))
        assert (data["quantity"], data["filled_quantity"]) == (11, 2)

    def test_an_order_rebuilt_from_its_audit_row_looks_as_the_saved_one(self):
        # OrderEvent.after keeps numbers normalized, as text ("1400.05", "10"): a resync rebuilds orders from it.
        rebuilt = an_order(price="1400.05", quantity="10", filled_quantity="0", average_price=None)
        assert presenters.order_data(rebuilt) == presenters.order_data(an_order())

    def test_non_ascii_text_passes_through_as_it_is(self):
        order = an_order(symbol="NIFTY₹", tag="ß-Ω", status_message='Rejected: 资金不足 \u2028 "quoted"')
        data = presenters.order_data(order)
        assert (data["tradingsymbol"], data["tag"], data["status_message"]) == (
            order.symbol,
            order.tag,
            order.status_message,
        )
        assert render(data) == render(serializers.OrderOutputSerializer(order).data)
        assert "NIFTY₹".encode() in render(data)  # UTF-8, not \u escapes

    def test_times_in_the_current_time_zone_as_drf_renders_them(self):
        with timezone.override("Asia/Kolkata"):
            data = presenters.order_data(an_order())
            assert data["created_at"] == "2026-03-02T14:45:00.123456+05:30"
            assert render(data) == render(serializers.OrderOutputSerializer(an_order()).data)

    def test_the_largest_order_the_database_holds(self):
        largest = Decimal("99999999999999.9999")  # max_digits 18, 4 decimals
        data = presenters.order_data(an_order(price=largest, quantity=largest, filled_quantity=largest))
        assert (data["price"], data["quantity"]) == ("99999999999999.9999", 100000000000000)


class TestBatch:
    def test_each_leg_with_its_outcome_and_its_order(self):
        data = presenters.batch_data(a_batch())
        assert data["status"] == "partial"
        assert [(leg["index"], leg["outcome"], leg["message"]) for leg in data["legs"]] == [
            (0, "placed", ""),
            (1, "rejected", "No such symbol."),
        ]
        assert data["legs"][1]["order"] == presenters.order_data(an_order(pk=42, status="REJECTED"))


class TestPosition:
    def test_a_position_as_clients_read_it(self):
        assert presenters.position_data(a_position()) == {
            "tradingsymbol": "INFY",
            "exchange": "NSE",
            "product": "CNC",
            "quantity": 10,
            "average_price": "1400.0500",
            "last_price": "1500.0000",
            "realised_pnl": "0.00",
            "unrealised_pnl": "999.50",
            "day_pnl": "999.50",
            "value": "15000.00",
        }

    def test_a_short_position_keeps_its_signs(self):
        short = a_position(quantity=Decimal("-5"), unrealised_pnl=Decimal("-0.005"), value=Decimal("-7500"))
        data = presenters.position_data(short)
        assert (data["quantity"], data["unrealised_pnl"], data["value"]) == (-5, "-0.01", "-7500.00")
        assert render(data) == render(serializers.PositionOutputSerializer(short).data)

    def test_amounts_in_cents_rounded_half_up(self):
        data = presenters.position_data(a_position(realised_pnl=Decimal("0.005"), day_pnl=Decimal("0.00499")))
        assert (data["realised_pnl"], data["day_pnl"]) == ("0.01", "0.00")

    def test_a_number_a_broker_left_out_is_null_as_the_serializer_shows_it(self):
        unknown = a_position(last_price=None, unrealised_pnl=None, quantity=None)
        data = presenters.position_data(unknown)
        assert (data["last_price"], data["unrealised_pnl"], data["quantity"]) == (None, None, None)
        assert render(data) == render(serializers.PositionOutputSerializer(unknown).data)

    def test_a_broker_number_as_a_float_or_text_is_read_without_float_noise(self):
        data = presenters.position_data(a_position(last_price=0.1 + 0.2, value="15000.005", quantity=3))
        assert (data["last_price"], data["value"], data["quantity"]) == ("0.3000", "15000.01", 3)

    def test_a_huge_value_is_shown_whole(self):
        # More digits than the serializer's 20 (it raised there): every one of them is shown, none rounded away.
        huge = a_position(
            value=Decimal("123456789012345678901234.565"), last_price=Decimal("12345678901234567890.12345")
        )
        data = presenters.position_data(huge)
        assert (data["value"], data["last_price"]) == ("123456789012345678901234.57", "12345678901234567890.1235")

    def test_a_number_beyond_what_decimal_holds_exactly_is_refused_not_rounded(self):
        with pytest.raises(InvalidOperation):
            presenters.position_data(a_position(value=Decimal("1e40")))

    @pytest.mark.parametrize("not_a_number", [Decimal("NaN"), Decimal("-Infinity"), float("nan"), float("inf")])
    def test_not_a_number_is_shown_as_not_known(self, not_a_number):
        # A broker's glitch: null, as a missing number, and the position's other numbers are still shown.
        data = presenters.position_data(a_position(last_price=not_a_number, value=not_a_number))
        assert (data["last_price"], data["value"], data["average_price"]) == (None, None, "1400.0500")

    def test_text_that_is_no_number_is_refused(self):
        with pytest.raises(InvalidOperation):
            presenters.position_data(a_position(last_price="n/a"))

    def test_non_ascii_symbols(self):
        position = a_position(symbol="ÄPPLÉ", exchange="БИРЖА", product="⚡")
        data = presenters.position_data(position)
        assert (data["tradingsymbol"], data["exchange"], data["product"]) == ("ÄPPLÉ", "БИРЖА", "⚡")
        assert render(data) == render(serializers.PositionOutputSerializer(position).data)


class TestHolding:
    def test_a_holding_as_clients_read_it(self):
        assert presenters.holding_data(a_holding()) == {
            "tradingsymbol": "INFY",
            "exchange": "NSE",
            "quantity": 10,
            "average_price": "1400.0500",
            "last_price": "1500.0000",
            "pnl": "999.50",
            "day_change": "-12.35",
            "value": "15000.00",
            "isin": "INE009A01021",
        }

    def test_a_holding_without_an_isin_shows_it_empty(self):
        assert presenters.holding_data(a_holding(isin=""))["isin"] == ""


class TestFunds:
    def test_funds_as_clients_read_them(self):
        assert presenters.funds_data(some_funds()) == {
            "currency": "INR",
            "cash": "100000.00",
            "available": "85999.51",
            "utilised": "14000.50",
            "buying_power": "85999.50",
            "net_liquidation": "115000.00",
            "charges_today": None,
        }

    def test_an_overdrawn_account_shows_negative_cash(self):
        overdrawn = replace(some_funds(), cash=Decimal("-1500.004"), available=Decimal("-250.125"))
        data = presenters.funds_data(overdrawn)
        assert (data["cash"], data["available"]) == ("-1500.00", "-250.13")
        assert render(data) == render(serializers.FundsOutputSerializer(overdrawn).data)

    def test_a_debit_under_half_a_cent_keeps_its_sign_as_the_api_always_showed_it(self):
        assert presenters.funds_data(replace(some_funds(), cash=Decimal("-0.004")))["cash"] == "-0.00"

    def test_the_raw_broker_payload_is_never_shown(self):
        funds = replace(some_funds(), raw={"securitiesAccount": {"accountNumber": "12345678"}})
        assert "raw" not in presenters.funds_data(funds)
        assert b"12345678" not in render(presenters.funds_data(funds))


class TestLiveRead:
    def test_data_first_then_where_and_when_it_came_from(self):
        as_of = datetime(2026, 3, 2, 9, 15, 0, 500000, tzinfo=UTC)
        data = presenters.funds_data(some_funds())
        body = presenters.live_read_data(account_id=7, source="stale", as_of=as_of, data=data)
        assert render(body) == b'{"data":%b,"account_id":7,"source":"stale","as_of":"2026-03-02T09:15:00.500000Z"}' % (
            render(data)
        )

    def test_what_the_envelope_serializer_documents(self):
        as_of = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
        positions = [a_position(), a_position(symbol="SBIN", quantity=Decimal("-1"))]
        body = presenters.live_read_data(
            account_id=7, source="live", as_of=as_of, data=presenters.positions_data(positions)
        )
        documented = serializers.PositionsOutputSerializer(
            {"account_id": 7, "source": "live", "as_of": as_of, "data": positions}
        ).data
        assert json.loads(render(body)) == json.loads(render(documented))


class TestNumbersShortPath:
    """The presenters' short path for a Decimal or an int (what the database gives) shows what thor.money shows."""

    @given(value=st.decimals(allow_nan=True, allow_infinity=True, places=None) | st.integers(-(10**15), 10**15))
    @settings(max_examples=300)
    def test_each_number_is_shown_as_thor_money_shows_it(self, value):
        def through_money(show, value):
            if not presenters._shown(value):
                return None
            try:
                return show(value)
            except InvalidOperation:
                return InvalidOperation

        def presented(present, value):
            try:
                return present(value)
            except InvalidOperation:
                return InvalidOperation

        assert presented(presenters._money, value) == through_money(money.money_text, value)
        assert presented(presenters._price, value) == through_money(money.price_text, value)
        assert presented(presenters._quantity, value) == through_money(money.quantity, value)

    def test_a_boolean_is_no_int_to_pass_through(self):
        assert presenters._quantity(True) == 1 and type(presenters._quantity(True)) is int
