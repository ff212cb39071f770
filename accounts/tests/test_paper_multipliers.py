"""Contracts whose quantity is lots (MCX, NSE's currency segment): every paper amount is quantity x price x
multiplier.

Kite's dump lists an MCX GOLD future with lot size 1 and a price per 10 grams; one lot is a kilogram, so a
quantity of 1 at 76,000 is worth 7,600,000 (brokers.contract_multipliers). Valued at quantity x price, a paper
account would pay 76,000 for it and its P&L, margin and charges would be a hundredth of the broker's.
"""

import contextlib
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db.models import Sum
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounts.checks import tenant_limits_check
from accounts.models import Order, OrderEvent, TradingAccount
from accounts.orders import order_place
from accounts.paper import paper_orders_match
from accounts.paper_buying_power import paper_buying_power
from accounts.paper_closing import expired_positions_settle, mis_positions_square_off
from accounts.tests import test_paper_fo
from accounts.tests.conftest import place
from accounts.tests.test_paper_valuation import assert_refused_for_the_market, booked, primary
from brokers.adapters.types import OrderRequest
from conftest import client_for
from identity.tests.factories import UserFactory
from market.loading import instrument_upsert
from market.models import Instrument
from market.tests.fixtures import GOLD_CALL, GOLD_FUTURE, GOLD_MULTIPLIER, UNSIZED_FUTURE, USDINR_FUTURE

pytestmark = pytest.mark.django_db
D = Decimal
GOLD = f"MCX:{GOLD_FUTURE}"
IST = ZoneInfo("Asia/Kolkata")


# Alice's primary (INR) paper account with 10,000,000 in cash, the small instrument master loaded.
account = test_paper_fo.account


def gold(client, **overrides):
    return place(
        client, **{"tradingsymbol": GOLD_FUTURE, "exchange": "MCX", "quantity": 1, "product": "NRML"} | overrides
    )


def positions(client) -> dict:
    return {row["tradingsymbol"]: row for row in client.get("/api/accounts/primary/positions").json()["data"]}


def test_a_gold_lot_costs_a_hundred_times_its_quoted_price(alice_client, account, fixed_prices):
    fixed_prices[GOLD] = "76000.00"

    response = gold(alice_client)

    assert response.status_code == 201, response.json()
    account.refresh_from_db()
    assert account.cash == D("10000000.00") - D("7600000.00")
    position = account.paper_positions.get(symbol=GOLD_FUTURE)
    assert (position.quantity, position.average_price, position.multiplier) == (1, D("76000"), GOLD_MULTIPLIER)


def test_its_pnl_value_and_funds_move_a_hundred_rupees_a_rupee(alice_client, account, fixed_prices):
    fixed_prices[GOLD] = "76000.00"
    assert gold(alice_client).status_code == 201
    fixed_prices[GOLD] = "76050.00"

    shown = positions(alice_client)[GOLD_FUTURE]
    funds = alice_client.get("/api/accounts/primary/funds").json()["data"]

    assert (shown["unrealised_pnl"], shown["value"]) == ("5000.00", "7605000.00")
    assert D(funds["net_liquidation"]) == D("10000000.00") + D("5000.00")


def test_selling_it_realises_the_move_times_the_multiplier(alice_client, account, fixed_prices):
    fixed_prices[GOLD] = "76000.00"
    assert gold(alice_client).status_code == 201
    fixed_prices[GOLD] = "75990.00"

    assert gold(alice_client, transaction_type="SELL").status_code == 201

    position = account.paper_positions.get(symbol=GOLD_FUTURE)
    account.refresh_from_db()
    assert (position.quantity, position.realised_pnl) == (0, D("-1000.00"))
    assert account.cash == D("10000000.00") - D("1000.00")


def test_a_second_lot_beyond_the_cash_is_refused_before_it_is_placed(alice_client, account, fixed_prices):
    fixed_prices[GOLD] = "76000.00"

    response = gold(alice_client, quantity=2)  # 15,200,000 against 10,000,000

    assert response.status_code == 400
    assert "Insufficient buying power: needs 15200000.00" in response.json()["errors"]["quantity"][0]
    assert not account.orders.exists()


def test_a_short_lot_ties_up_its_value_and_margin(alice_client, account, fixed_prices, tenant):
    tenant.paper_margin_rates = {"NRML": "0.10"}
    tenant.save()
    fixed_prices[GOLD] = "76000.00"

    assert gold(alice_client, transaction_type="SELL").status_code == 201

    funds = alice_client.get("/api/accounts/primary/funds").json()["data"]
    # The proceeds are owed back: buying it back (7,600,000) plus 10% margin is tied up.
    assert D(funds["utilised"]) == D("8360000.00")
    assert D(funds["available"]) == D("17600000.00") - D("8360000.00")


def test_charges_are_on_the_contracts_value(alice_client, account, fixed_prices, settings):
    settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}
    fixed_prices[GOLD] = "76000.00"

    assert gold(alice_client).status_code == 201

    order = account.orders.get()
    # On 7,600,000: brokerage capped at 20, MCX's 0.0021% (159.60), SEBI's 7.60, stamp 0.002% (152.00), and GST
    # on brokerage, exchange and SEBI (33.70). On 76,000 they would be 15.20 in all.
    assert order.charges == D("372.90")
    account.refresh_from_db()
    assert account.cash == D("10000000.00") - D("7600000.00") - D("372.90")


def test_the_tenants_max_order_value_counts_the_contracts_value(alice_client, account, fixed_prices, tenant):
    tenant.max_order_value = D("1000000.00")
    tenant.save()
    fixed_prices[GOLD] = "76000.00"

    response = gold(alice_client)

    assert response.status_code == 400
    assert "Order value 7600000.00 exceeds the limit" in response.json()["errors"]["quantity"][0]


def test_a_contract_whose_size_thor_does_not_know_is_refused_by_name(alice_client, account, fixed_prices):
    fixed_prices[f"MCX:{UNSIZED_FUTURE}"] = "1500.00"

    response = place(alice_client, tradingsymbol=UNSIZED_FUTURE, exchange="MCX", quantity=1, product="NRML")

    assert response.status_code == 400
    (message,) = response.json()["errors"]["tradingsymbol"]
    assert f"MCX:{UNSIZED_FUTURE}" in message and "does not know this contract's size" in message
    assert not account.orders.exists()


def test_a_position_keeps_the_multiplier_it_opened_with(alice_client, account, fixed_prices):
    """A position opened before Thor knew a contract's size moved cash at 1: it closes at 1, so its cash adds up."""
    fixed_prices[GOLD] = "76000.00"
    account.paper_positions.create(exchange="MCX", symbol=GOLD_FUTURE, product="NRML", quantity=1, average_price=76000)
    fixed_prices[GOLD] = "76100.00"

    assert gold(alice_client, transaction_type="SELL").status_code == 201

    position = account.paper_positions.get(symbol=GOLD_FUTURE)
    account.refresh_from_db()
    assert (position.quantity, position.realised_pnl, position.multiplier) == (0, D("100.00"), 1)
    assert account.cash == D("10000000.00") + D("76100.00")


def test_at_expiry_it_settles_at_its_last_price_times_the_multiplier(alice_client, account, fixed_prices):
    fixed_prices[GOLD] = "76000.00"
    assert gold(alice_client).status_code == 201
    fixed_prices[GOLD] = "76200.00"
    expiry = Instrument.objects.get(exchange="MCX", tradingsymbol=GOLD_FUTURE).expiry
    after_the_close = datetime.combine(expiry + timedelta(days=1), time(1, 0), tzinfo=IST)

    with time_machine.travel(after_the_close, tick=False):
        assert expired_positions_settle() == 1

    position = account.paper_positions.get(symbol=GOLD_FUTURE)
    account.refresh_from_db()
    assert (position.quantity, position.realised_pnl) == (0, D("20000.00"))
    assert account.cash == D("10000000.00") + D("20000.00")


def test_an_option_on_the_future_settles_at_its_intrinsic_value_against_the_future(alice_client, account, fixed_prices):
    """MCX's options are written on its futures: one in the money at expiry is worth the future's price less the
    strike (paper settles in cash what MCX devolves into the future), times the multiplier."""
    fixed_prices[f"MCX:{GOLD_CALL}"] = "500.00"
    bought = place(alice_client, tradingsymbol=GOLD_CALL, exchange="MCX", quantity=1, product="NRML")
    assert bought.status_code == 201, bought.json()
    fixed_prices[f"MCX:{GOLD_CALL}"] = "790.00"  # its own last price: not what it settles at
    fixed_prices[GOLD] = "76800.00"
    expiry = Instrument.objects.get(exchange="MCX", tradingsymbol=GOLD_CALL).expiry

    with time_machine.travel(datetime.combine(expiry + timedelta(days=1), time(1, 0), tzinfo=IST), tick=False):
        assert expired_positions_settle() == 1

    position = account.paper_positions.get(symbol=GOLD_CALL)
    account.refresh_from_db()
    assert (position.quantity, position.realised_pnl) == (0, D("30000.00"))  # (800 - 500) x 100
    assert account.cash == D("10000000.00") + D("30000.00")


class TestCurrencyFutures:
    """NSE's currency segment (Kite's CDS): lots of 1,000 dollars quoted in rupees per dollar to a quarter paisa."""

    USDINR = f"CDS:{USDINR_FUTURE}"

    def usdinr(self, client, **overrides):
        body = {"tradingsymbol": USDINR_FUTURE, "exchange": "CDS", "quantity": 2, "product": "NRML"}
        return place(client, **(body | overrides))

    def test_two_lots_cost_two_thousand_dollars_in_rupees(self, alice_client, account, fixed_prices):
        fixed_prices[self.USDINR] = "84.5000"

        assert self.usdinr(alice_client).status_code == 201
        fixed_prices[self.USDINR] = "84.5125"

        account.refresh_from_db()
        assert account.cash == D("10000000.00") - D("169000.00")
        shown = positions(alice_client)[USDINR_FUTURE]
        assert (shown["unrealised_pnl"], shown["value"]) == ("25.00", "169025.00")

    def test_a_limit_off_the_quarter_paisa_grid_is_refused(self, alice_client, account, fixed_prices):
        fixed_prices[self.USDINR] = "84.5000"

        response = self.usdinr(alice_client, order_type="LIMIT", price="84.5010")

        assert response.status_code == 400
        assert response.json()["errors"]["price"] == ["Must be a multiple of the tick size 0.0025."]

    def test_an_intraday_position_is_squared_off_at_a_quarter_to_five(self, alice, account, fixed_prices):
        fixed_prices[self.USDINR] = "84.5000"
        day = datetime.now(IST).date()
        with time_machine.travel(datetime.combine(day, time(10, 0), tzinfo=IST), tick=False):
            response = self.usdinr(client_for(alice), product="MIS")
            assert response.status_code == 201, response.json()

        with time_machine.travel(datetime.combine(day, time(16, 44), tzinfo=IST), tick=False):
            assert mis_positions_square_off() == 0
        with time_machine.travel(datetime.combine(day, time(16, 46), tzinfo=IST), tick=False):
            assert mis_positions_square_off() == 1
        assert account.paper_positions.get(symbol=USDINR_FUTURE, product="MIS").quantity == 0


gold_steps = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "BUY", "SELL"]),
        st.integers(1, 3),  # lots
        st.sampled_from(["MARKET", "LIMIT", "LIMIT"]),
        st.integers(-60, 60),  # a limit, in rupees off the mark
        st.lists(st.tuples(st.integers(0, 40), st.integers(-1, 3)), max_size=3),  # depth: (rupees away, lots)
        st.sampled_from(["MIS", "NRML"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
@given(
    steps=gold_steps,
    mark_off=st.integers(-300, 300),  # the example's last price, in rupees off 76,000
    headroom=st.integers(20, 150),
    charges=st.booleans(),
    margin=st.sampled_from(["0.1", "1"]),
)
def test_a_lot_the_check_lets_through_is_never_refused_at_its_fill_and_the_money_adds_up(
    tenant, instrument_master, fixed_prices, settings, steps, mark_off, headroom, charges, margin
):
    """GOLD lots bought, sold short and bought back, at the market and at limits that rest and fill at a later
    matching pass, from books of a few levels around one last price (a price that moved would rightly take buying
    power below zero: a short's loss), on an account with a fraction of their value to spare: an order the
    check lets through is never refused at its fill for funds, no order is REJECTED, cash and buying power never go
    below zero, and cash plus the positions at the mark (quantity x price x 100) moves by exactly what was charged
    and what the fills paid away from the mark. Every amount was checked at 100 times what a price alone says: a
    path that forgot the multiplier would let the check through and the fill refuse it, or move the money by a
    hundredth."""
    settings.THOR_PAPER_CHARGES = {"enabled": charges, "tenants": {}}
    tenant.paper_margin_rates = {"MIS": margin, "NRML": margin}
    tenant.save()
    account = primary(UserFactory(tenant=tenant))  # a new user each example: order rows are never deleted
    account.cash = (D("76000") * GOLD_MULTIPLIER * 3 * headroom / 100).quantize(D("0.01"))
    account.save()
    start = account.cash
    mark = D(76000 + mark_off)
    for side, lots, order_type, limit_off, depth, product in steps:
        fixed_prices[GOLD] = booked(
            mark,
            asks=[(mark + away, quantity) for away, quantity in depth],
            bids=[(mark - away, quantity) for away, quantity in depth],
        )
        request = OrderRequest(
            symbol=GOLD_FUTURE,
            exchange="MCX",
            side=side,
            quantity=D(lots),
            order_type=order_type,
            product=product,
            price=mark + limit_off if order_type == "LIMIT" else None,
        )
        with contextlib.suppress(ValidationError):
            try:
                order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=None)
            except ValidationError as error:
                assert_refused_for_the_market(error)
                event("refused before")
                raise
        paper_orders_match(account_id=account.pk)

        account.refresh_from_db()
        refused_at_fill = account.orders.filter(status_message__contains="Insufficient funds at fill")
        assert not refused_at_fill.exists(), list(refused_at_fill.values("quantity", "status", "status_message"))
        assert account.cash >= 0
        assert paper_buying_power(account=account, marks={("MCX", GOLD_FUTURE): mark}) >= 0
        held = {p.product: p for p in account.paper_positions.filter(symbol=GOLD_FUTURE)}
        for position in held.values():
            if position.quantity:
                event("a GOLD lot held")
                assert position.multiplier == GOLD_MULTIPLIER
        # Cash: the start, less the charges, less what the fills paid (each moves cash by its value to the cent).
        paid = sum(
            (
                (D(row.broker_response["fill"]["quantity"]) * D(row.broker_response["fill"]["price"]))
                * (1 if row.order.side == "BUY" else -1)
                for row in OrderEvent.objects.filter(order__account=account, kind="filled")
            ),
            D(0),
        )
        charged = account.orders.filter(children__isnull=True).aggregate(total=Sum("charges"))["total"] or D(0)
        fills = OrderEvent.objects.filter(order__account=account, kind="filled").count()
        assert abs(account.cash - (start - paid * GOLD_MULTIPLIER - charged)) <= D("0.01") * fills
        # Each position is the net of its product's fills.
        for product in ("MIS", "NRML"):
            orders = account.orders.filter(children__isnull=True, product=product)
            net = sum((o.filled_quantity * (1 if o.side == "BUY" else -1) for o in orders), D(0))
            assert net == (held[product].quantity if product in held else 0)
    assert not account.orders.filter(status=Order.Status.REJECTED).exists()


def test_bses_currency_futures_trade_as_nses_do(alice_client, account, fixed_prices):
    """BSE's currency segment (Kite's BCD): the same lots of 1,000 dollars; a contract the master lists trades."""
    instrument_upsert(
        row={
            "instrument_token": "123456",
            "exchange_token": "482",
            "tradingsymbol": "USDINR26DECFUT",
            "name": "USDINR",
            "expiry": (datetime.now(IST).date() + timedelta(days=20)).isoformat(),
            "strike": "0",
            "tick_size": "0.0025",
            "lot_size": "1",
            "instrument_type": "FUT",
            "segment": "BCD-FUT",
            "exchange": "BCD",
        },
        source="kite",
    )
    fixed_prices["BCD:USDINR26DECFUT"] = "84.5000"

    response = place(alice_client, tradingsymbol="USDINR26DECFUT", exchange="BCD", quantity=1, product="NRML")

    assert response.status_code == 201, response.json()
    account.refresh_from_db()
    assert account.cash == D("10000000.00") - D("84500.00")


def test_a_live_order_of_unknown_size_cannot_be_held_to_the_tenants_order_value_limit(alice, tenant, instrument_master):
    tenant.max_order_value = D("1000000.00")
    tenant.save()
    live = TradingAccount(user=alice, mode=TradingAccount.Mode.LIVE, currency="INR")
    request = OrderRequest(
        symbol=UNSIZED_FUTURE,
        exchange="MCX",
        side="BUY",
        quantity=D(1),
        order_type="LIMIT",
        product="NRML",
        price=D("1500"),
    )

    with pytest.raises(ValidationError) as refused:
        tenant_limits_check(account=live, request=request, price=D("1500"))

    (message,) = refused.value.message_dict["tradingsymbol"]
    assert "order value limit" in message and "paper" not in message
