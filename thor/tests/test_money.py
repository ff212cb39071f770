"""The one money policy: cash and P&L in cents, prices to at most 4 decimals, whole quantities, half up."""

from decimal import Decimal

import pytest

from accounts.tests.conftest import place
from thor import money


@pytest.mark.parametrize(
    ("value", "cents"),
    [("0.005", "0.01"), ("0.015", "0.02"), ("2.675", "2.68"), ("-0.005", "-0.01"), (0.1 + 0.2, "0.30"), (7, "7.00")],
)
def test_amounts_round_half_up_to_cents(value, cents):
    assert money.money_text(value) == cents


@pytest.mark.parametrize(
    ("value", "is_price"),
    [
        (Decimal("1500.05"), True),
        ("0.05", True),
        (1, True),
        (Decimal("0"), False),  # Kite's last price of a contract that has not traded
        ("0.00", False),
        (Decimal("-2.5"), False),
        (Decimal("NaN"), False),
        ("Infinity", False),
        (None, False),  # a broker's missing price
        ("", False),
        ("1,500", False),
    ],
)
def test_a_market_price_is_a_finite_number_above_zero(value, is_price):
    assert money.is_market_price(value) is is_price


def test_prices_keep_four_decimals_and_quantities_are_whole():
    assert (money.price_text("1500.05"), money.price_text("0.00005"), money.price_text(None)) == (
        "1500.0500",
        "0.0001",
        None,
    )
    assert money.quantity(Decimal("10.0000")) == 10


@pytest.mark.django_db
def test_every_endpoint_renders_one_value_the_same_way(alice_client, settings):
    # No charges: a resting buy reserves its charges with its cost, which is another module's matter.
    settings.THOR_PAPER_CHARGES = {"enabled": False, "tenants": {}}
    place(alice_client, quantity=3, order_type="LIMIT", price="1400.05")
    order = alice_client.get("/api/accounts/primary/orders").json()["results"][0]
    cash = alice_client.get("/api/auth/me").json()["primary_account"]["cash"]
    funds = alice_client.get("/api/accounts/primary/funds").json()["data"]
    bought = place(alice_client, quantity=3).json()
    position = alice_client.get("/api/accounts/primary/positions").json()["data"][0]

    assert cash == funds["cash"] == "100000.00"
    assert funds["utilised"] == "4200.15" and funds["available"] == "95799.85"
    assert (order["quantity"], order["filled_quantity"], order["price"]) == (3, 0, "1400.0500")
    assert (bought["quantity"], bought["average_price"]) == (3, "1500.7500")  # 5 bps of slippage, on the tick
    assert (position["quantity"], position["average_price"], position["value"]) == (3, "1500.7500", "4500.00")
