"""The Schwab sandbox's order book (brokers.sandbox.schwab_ledger) over real HTTP: orders rest and fill as
prices cross, are refused as Schwab refuses them, replaced, cancelled and listed."""

from datetime import UTC, datetime, timedelta

import pytest

from brokers.tests import schwab_sandbox_calls
from brokers.tests.schwab_sandbox_calls import api, equity_order, order_of, pin, place

pytestmark = pytest.mark.e2e

# The sandbox's fixtures, by the names pytest finds them under.
clock = schwab_sandbox_calls.clock
sandbox = schwab_sandbox_calls.sandbox
session = schwab_sandbox_calls.session


# --- orders -----------------------------------------------------------------------------------


def test_a_limit_order_rests_until_the_price_crosses_then_fills(sandbox, session):
    pin(sandbox, AAPL=190.0)
    before = api(sandbox, "GET", f"/trader/v1/accounts/{session['MARGIN']}", session["access"]).json()
    order_id = place(sandbox, session, price=185.0)
    assert order_of(sandbox, session, order_id)["status"] == "WORKING"

    pin(sandbox, AAPL=184.5)

    order = order_of(sandbox, session, order_id)
    assert order["status"] == "FILLED" and order["filledQuantity"] == 5 and order["remainingQuantity"] == 0
    assert order["orderActivityCollection"][0]["executionLegs"][0]["price"] == 184.5
    after = api(sandbox, "GET", f"/trader/v1/accounts/{session['MARGIN']}?fields=positions", session["access"]).json()
    balances = before["securitiesAccount"]["currentBalances"], after["securitiesAccount"]["currentBalances"]
    assert round(balances[0]["cashBalance"] - balances[1]["cashBalance"], 2) == round(5 * 184.5, 2)
    apple = next(p for p in after["securitiesAccount"]["positions"] if p["instrument"]["symbol"] == "AAPL")
    assert apple["longQuantity"] == 15


def test_a_market_order_fills_at_once_and_a_stop_waits_for_its_trigger(sandbox, session):
    pin(sandbox, AAPL=190.0)
    market = place(sandbox, session, order_type="MARKET")
    stop = place(sandbox, session, instruction="SELL", quantity=3, order_type="STOP", stopPrice=180.0)
    assert order_of(sandbox, session, market)["status"] == "FILLED"
    assert order_of(sandbox, session, stop)["status"] == "WORKING"

    pin(sandbox, AAPL=179.0)

    assert order_of(sandbox, session, stop)["status"] == "FILLED"


def test_orders_the_account_cannot_pay_for_or_deliver_are_rejected(sandbox, session):
    pin(sandbox, AAPL=190.0)
    oversold = place(sandbox, session, instruction="SELL", quantity=1000, order_type="MARKET")
    too_big = place(sandbox, session, account="CASH", quantity=1000, price=190.0)

    assert order_of(sandbox, session, oversold)["status"] == "REJECTED"
    rejected = order_of(sandbox, session, too_big, account="CASH")
    assert rejected["status"] == "REJECTED" and "cash" in rejected["statusDescription"]


@pytest.mark.parametrize(
    "body",
    [
        equity_order(quantity=0),
        equity_order(quantity=1.5),
        equity_order(quantity=-1),
        equity_order(quantity="5"),
        equity_order(symbol="NOPE"),
        equity_order(instruction="SELL_SHORT"),
        equity_order(order_type="LIMIT"),  # no price
        equity_order(order_type="STOP"),  # no stopPrice
        equity_order(price=-1.0),
        {**equity_order(price=1.0), "duration": "FOREVER"},
        {**equity_order(price=1.0), "orderLegCollection": []},
        [],
    ],
)
def test_malformed_orders_are_refused_with_400(sandbox, session, body):
    answer = api(sandbox, "POST", f"/trader/v1/accounts/{session['MARGIN']}/orders", session["access"], json=body)

    assert answer.status_code == 400 and answer.json()["errors"]


def test_replace_creates_a_new_order_and_cancel_ends_it(sandbox, session):
    pin(sandbox, AAPL=190.0)
    old = place(sandbox, session, price=180.0)
    path = f"/trader/v1/accounts/{session['MARGIN']}/orders"

    replaced = api(sandbox, "PUT", f"{path}/{old}", session["access"], json=equity_order(quantity=7, price=181.0))

    assert replaced.status_code == 201
    new = replaced.headers["Location"].rsplit("/", 1)[1]
    assert new != old and order_of(sandbox, session, old)["status"] == "REPLACED"
    assert order_of(sandbox, session, new)["quantity"] == 7
    assert api(sandbox, "PUT", f"{path}/{old}", session["access"], json=equity_order(price=1.0)).status_code == 400
    assert api(sandbox, "DELETE", f"{path}/{new}", session["access"]).status_code == 200
    assert order_of(sandbox, session, new)["status"] == "CANCELED"
    assert api(sandbox, "DELETE", f"{path}/{new}", session["access"]).status_code == 400
    assert api(sandbox, "DELETE", f"{path}/999", session["access"]).status_code == 404


def test_the_order_list_filters_by_entered_time_and_status(sandbox, session, clock):
    pin(sandbox, AAPL=190.0)
    early = place(sandbox, session, price=150.0)
    clock.advance(1200)
    late = place(sandbox, session, price=151.0)
    path = f"/trader/v1/accounts/{session['MARGIN']}/orders"
    now = datetime.fromtimestamp(clock(), UTC)

    def listed(**query):
        return [str(order["orderId"]) for order in api(sandbox, "GET", path, session["access"], params=query).json()]

    window = {"toEnteredTime": (now + timedelta(minutes=1)).isoformat()}
    assert listed(fromEnteredTime=(now - timedelta(hours=1)).isoformat(), **window) == [late, early]
    assert listed(fromEnteredTime=(now - timedelta(minutes=5)).isoformat(), **window) == [late]
    assert listed(fromEnteredTime=(now - timedelta(hours=1)).isoformat(), status="FILLED", **window) == []
    assert api(sandbox, "GET", path, session["access"]).status_code == 400
    assert (
        api(sandbox, "GET", path, session["access"], params={"fromEnteredTime": "yesterday", **window}).status_code
        == 400
    )
