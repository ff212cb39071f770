"""Contracts whose quantity is lots (MCX, currencies): every paper amount is quantity x price x multiplier.

Kite's dump lists an MCX GOLD future with lot size 1 and a price per 10 grams; one lot is a kilogram, so a
quantity of 1 at 76,000 is worth 7,600,000 (brokers.contract_multipliers). Valued at quantity x price, a paper
account would pay 76,000 for it and its P&L, margin and charges would be a hundredth of the broker's.
"""

from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from accounts.models import TradingAccount
from accounts.paper_closing import expired_positions_settle
from accounts.tests.conftest import place
from market.models import Instrument
from market.tests.fixtures import GOLD_FUTURE, GOLD_MULTIPLIER, UNSIZED_FUTURE

pytestmark = pytest.mark.django_db
D = Decimal
GOLD = f"MCX:{GOLD_FUTURE}"


@pytest.fixture
def account(alice, instrument_master):
    account = TradingAccount.objects.get(user=alice, is_primary=True)
    account.cash = D("10000000.00")
    account.save()
    return account


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
    after_the_close = datetime.combine(expiry + timedelta(days=1), time(1, 0), tzinfo=ZoneInfo("Asia/Kolkata"))

    with time_machine.travel(after_the_close, tick=False):
        assert expired_positions_settle() == 1

    position = account.paper_positions.get(symbol=GOLD_FUTURE)
    account.refresh_from_db()
    assert (position.quantity, position.realised_pnl) == (0, D("20000.00"))
    assert account.cash == D("10000000.00") + D("20000.00")
