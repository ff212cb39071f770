"""The Kite sandbox's orders (brokers.sandbox.kite_ledger) driven by the official kiteconnect client: fills as
prices cross, modify and cancel, validation and market protection, and postbacks."""

import hashlib
import time
from collections import deque

import pytest
import requests
from kiteconnect import exceptions as kite_exceptions

from brokers.sandbox.market import load_json_fixture
from brokers.tests import kite_sandbox_calls
from brokers.tests.kite_sandbox_calls import (
    API_KEY,
    API_SECRET,
    add_fault,
    fixture_data,
    kite_session,
    net_quantity,
    pin,
    place,
)
from market.tests.fixtures import NIFTY_FUTURE, NIFTY_LOT, NIFTY_SLICE

pytestmark = pytest.mark.e2e

# The sandbox's fixtures, by the names pytest finds them under.
postback_receiver = kite_sandbox_calls.postback_receiver
latency_waits = kite_sandbox_calls.latency_waits
sandbox = kite_sandbox_calls.sandbox
fresh_sandbox = kite_sandbox_calls.fresh_sandbox

# --- fills ------------------------------------------------------------------------------------


def test_market_order_fills_and_moves_positions_and_margins(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:TCS": 3900.0})
    quantity_before = net_quantity(kite, "TCS")
    cash_before = kite.margins("equity")["net"]

    order_id = place(kite, tradingsymbol="TCS", quantity=3, tag="thor-1")

    history = kite.order_history(order_id)
    assert history[0]["status"] == "PUT ORDER REQ RECEIVED"
    order = history[-1]
    assert order["status"] == "COMPLETE"
    assert order["average_price"] == 3900.0 and order["filled_quantity"] == 3
    assert order["tag"] == "thor-1"
    assert set(fixture_data("orders.json")[1]) <= set(order)
    assert [item["order_id"] for item in kite.orders()].count(order_id) == 1
    trades = kite.order_trades(order_id)
    assert [(trade["quantity"], trade["average_price"]) for trade in trades] == [(3, 3900.0)]
    assert set(trades[0]) == set(fixture_data("trades.json")[0])
    assert net_quantity(kite, "TCS") == quantity_before + 3
    assert kite.margins("equity")["net"] == pytest.approx(cash_before - 3 * 3900.0)


def test_limit_order_rests_until_the_price_crosses(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:RELIANCE": 2900.0})
    order_id = place(kite, tradingsymbol="RELIANCE", order_type="LIMIT", price=2850.0, quantity=1)
    assert kite.order_history(order_id)[-1]["status"] == "OPEN"

    pin(sandbox, {"NSE:RELIANCE": 2849.5})
    order = kite.order_history(order_id)[-1]
    assert order["status"] == "COMPLETE"
    assert order["average_price"] == 2849.5


def test_stop_loss_order_waits_for_its_trigger(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:HDFCBANK": 1650.0})
    order_id = place(kite, tradingsymbol="HDFCBANK", transaction_type="SELL", order_type="SL-M", trigger_price=1600.0)
    assert kite.order_history(order_id)[-1]["status"] == "TRIGGER PENDING"

    pin(sandbox, {"NSE:HDFCBANK": 1599.0})
    order = kite.order_history(order_id)[-1]
    assert (order["status"], order["average_price"]) == ("COMPLETE", 1599.0)


def test_modify_and_cancel_open_order_and_refuse_cancelling_a_filled_one(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:ITC": 430.0})
    order_id = place(kite, tradingsymbol="ITC", order_type="LIMIT", price=400.0, quantity=4)

    assert kite.modify_order("regular", order_id, price=401.5, quantity=6) == order_id
    modified = kite.order_history(order_id)[-1]
    assert (modified["status"], modified["price"], modified["quantity"], modified["modified"]) == (
        "OPEN",
        401.5,
        6,
        True,
    )

    assert kite.cancel_order("regular", order_id) == order_id
    assert kite.order_history(order_id)[-1]["status"] == "CANCELLED"
    with pytest.raises(kite_exceptions.InputException):
        kite.cancel_order("regular", order_id)

    filled_id = place(kite, tradingsymbol="ITC", quantity=1)
    with pytest.raises(kite_exceptions.InputException) as raised:
        kite.cancel_order("regular", filled_id)
    assert raised.value.code == 400


def test_an_order_is_modified_twenty_five_times_and_the_next_is_a_network_exception(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:ITC": 430.0})
    order_id = place(kite, tradingsymbol="ITC", order_type="LIMIT", price=400.0, quantity=1)
    for step in range(25):
        if step % 9 == 8:
            sandbox.state.kite.order_rate.forget("AB1234")  # a second later, without waiting it out
        kite.modify_order("regular", order_id, price=400.0 - step / 2)

    with pytest.raises(kite_exceptions.NetworkException, match="Maximum allowed order modifications exceeded"):
        kite.modify_order("regular", order_id, price=390.0)

    assert kite.order_history(order_id)[-1]["price"] == 388.0
    assert kite.cancel_order("regular", order_id) == order_id


def test_unaffordable_order_is_rejected(sandbox):
    kite = kite_session(sandbox)
    order_id = place(kite, tradingsymbol="TCS", quantity=100_000)
    order = kite.order_history(order_id)[-1]
    assert order["status"] == "REJECTED"
    assert order["status_message"].startswith("Insufficient funds")


def test_users_only_see_their_own_orders(sandbox):
    first = kite_session(sandbox, user_id="AB1234")
    second = kite_session(sandbox, user_id="CD5678")
    pin(sandbox, {"NSE:IOC": 140.0})
    order_id = place(second, tradingsymbol="IOC")
    assert order_id in {order["order_id"] for order in second.orders()}
    assert order_id not in {order["order_id"] for order in first.orders()}
    with pytest.raises(kite_exceptions.InputException):
        first.order_history(order_id)
    with pytest.raises(kite_exceptions.InputException):
        first.cancel_order("regular", order_id)


# --- validation and market protection ---------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"quantity": 0},
        {"quantity": "1.5"},
        {"order_type": "LIMIT"},
        {"exchange": "XYZ"},
        {"transaction_type": "HOLD"},
        {"product": "FOO"},
        {"tradingsymbol": "NOSUCHSYMBOL"},
        {"variety": "weird"},
    ],
)
def test_invalid_orders_raise_input_exception(sandbox, overrides):
    kite = kite_session(sandbox)
    with pytest.raises(kite_exceptions.InputException):
        place(kite, **overrides)


@pytest.mark.parametrize("order_type, trigger_price", [("MARKET", None), ("SL-M", 1400.0)])
def test_a_market_order_without_market_protection_is_an_input_exception(sandbox, order_type, trigger_price):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:INFY": 1500.0})

    with pytest.raises(kite_exceptions.InputException, match="market_protection") as raised:
        place(kite, order_type=order_type, trigger_price=trigger_price, market_protection=None)

    assert raised.value.code == 400
    assert kite.orders() == []


def test_the_refusal_has_kites_error_shape_on_the_wire(sandbox):
    kite = kite_session(sandbox)
    order = {"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY", "quantity": "1"}

    response = requests.post(
        f"{sandbox.url}/orders/regular",
        data={**order, "product": "CNC", "order_type": "MARKET"},
        headers={"Authorization": f"token {API_KEY}:{kite.access_token}", "X-Kite-Version": "3"},
        timeout=5,
    )

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["error_type"] == "InputException"
    assert "market_protection" in body["message"]


@pytest.mark.parametrize("protection", [-1, "-1.00", 0.5, 2, 100])
def test_a_market_order_with_market_protection_fills(sandbox, protection):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:INFY": 1500.0})

    order_id = place(kite, quantity=1, market_protection=protection)

    order = kite.order_history(order_id)[-1]
    assert order["status"] == "COMPLETE" and order["market_protection"] == float(protection)


@pytest.mark.parametrize("protection", [0, -2, -0.5, 100.01, 1000, "abc", "nan", "inf", "1e400"])
def test_market_protection_outside_minus_one_or_a_percentage_is_refused(sandbox, protection):
    kite = kite_session(sandbox)

    with pytest.raises(kite_exceptions.InputException, match="market_protection"):
        place(kite, market_protection=protection)
    with pytest.raises(kite_exceptions.InputException, match="market_protection"):
        place(kite, order_type="LIMIT", price=1400.0, market_protection=protection)

    assert kite.orders() == []


def test_a_limit_order_needs_no_market_protection(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:INFY": 1500.0})

    order_id = place(kite, order_type="LIMIT", price=1400.0, market_protection=None)

    assert kite.order_history(order_id)[-1]["status"] == "OPEN"


def test_turning_a_resting_order_into_a_market_order_needs_market_protection(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:INFY": 1500.0})
    order_id = place(kite, order_type="LIMIT", price=1400.0, quantity=1, market_protection=None)

    with pytest.raises(kite_exceptions.InputException, match="market_protection"):
        kite.modify_order("regular", order_id, order_type="MARKET")
    assert kite.order_history(order_id)[-1]["status"] == "OPEN"

    kite.modify_order("regular", order_id, order_type="MARKET", market_protection=-1)
    assert kite.order_history(order_id)[-1]["status"] == "COMPLETE"


def test_a_stop_loss_market_order_keeps_its_protection_when_its_trigger_moves(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:INFY": 1500.0})
    order_id = place(kite, transaction_type="SELL", order_type="SL-M", trigger_price=1400.0, market_protection=5)

    kite.modify_order("regular", order_id, trigger_price=1450.0)

    order = kite.order_history(order_id)[-1]
    assert (order["status"], order["trigger_price"], order["market_protection"]) == ("TRIGGER PENDING", 1450.0, 5)


# --- postbacks --------------------------------------------------------------------------------


def test_postbacks_carry_a_verifiable_checksum(sandbox, postback_receiver):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:BHEL": 250.0})
    order_id = place(kite, tradingsymbol="BHEL")

    completed = postback_receiver.wait_for(lambda item: item["order_id"] == order_id and item["status"] == "COMPLETE")
    payload = completed[0]
    assert set(payload) == set(load_json_fixture("postback.json"))
    expected = hashlib.sha256((order_id + payload["order_timestamp"] + API_SECRET).encode()).hexdigest()
    assert payload["checksum"] == expected
    assert payload["user_id"] == "AB1234" and payload["unfilled_quantity"] == 0
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["postbacks"]["sent"] >= 1


# --- autoslice (Kite's `autoslice=true`: an order above the freeze quantity as slices) -----------------


def nifty_sell(kite, quantity: int, **overrides) -> dict:
    params = dict(
        variety="regular",
        exchange="NFO",
        tradingsymbol=NIFTY_FUTURE,
        transaction_type="SELL",
        quantity=quantity,
        product="NRML",
        order_type="MARKET",
        market_protection=-1,
        tag="thorparent01",
        algo_id="41230",
    )
    return kite.place_autoslice_order(**{**params, **overrides})


def test_autoslice_places_one_order_per_slice_tagged_alike(sandbox):
    kite = kite_session(sandbox)

    answer = nifty_sell(kite, 2 * NIFTY_SLICE + NIFTY_LOT)

    children = answer["children"]
    assert answer["order_id"] and [set(child) for child in children] == [{"order_id"}] * 3
    book = {order["order_id"]: order for order in kite.orders()}
    assert answer["order_id"] not in book
    placed = [book[child["order_id"]] for child in children]
    assert [order["quantity"] for order in placed] == [NIFTY_SLICE, NIFTY_SLICE, NIFTY_LOT]
    assert {(order["tag"], order["algo_id"], order["status"]) for order in placed} == {
        ("thorparent01", "41230", "COMPLETE")
    }


def test_autoslice_beyond_ten_slices_is_kites_input_error_and_places_nothing(sandbox):
    kite = kite_session(sandbox)

    with pytest.raises(kite_exceptions.InputException, match="more than 10 slices"):
        nifty_sell(kite, 10 * NIFTY_SLICE + NIFTY_LOT)

    assert kite.orders() == []


def test_a_plain_order_above_the_freeze_quantity_is_refused(sandbox):
    kite = kite_session(sandbox)

    with pytest.raises(kite_exceptions.InputException, match="freeze limit of 1800"):
        place(
            kite,
            exchange="NFO",
            tradingsymbol=NIFTY_FUTURE,
            transaction_type="SELL",
            quantity=NIFTY_SLICE + NIFTY_LOT,
            product="NRML",
        )


def test_a_slice_reject_fault_fails_the_slices_it_names_once(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="slice_reject", slices=[1, 3], message="RMS: blocked", count=1)

    children = nifty_sell(kite, 3 * NIFTY_SLICE)["children"]
    again = nifty_sell(kite, 3 * NIFTY_SLICE)["children"]

    assert [child.get("error", {}).get("message") for child in children] == ["RMS: blocked", None, "RMS: blocked"]
    assert children[0]["error"]["error_type"] == "InputException" and "order_id" in children[1]
    assert all("order_id" in child for child in again)
    assert len(kite.orders()) == 4


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"kind": "slice_reject"}, "slices"),
        ({"kind": "slice_reject", "slices": [0]}, "slices"),
        ({"kind": "slice_reject", "slices": [1], "message": 5}, "message"),
        ({"kind": "5xx", "slices": [1]}, "slice_reject faults only"),
        ({"broker": "schwab", "kind": "slice_reject", "slices": [1]}, "Kite's only"),
    ],
)
def test_a_bad_slice_reject_fault_is_refused_naming_why(sandbox, fault, reason):
    response = requests.post(f"{sandbox.url}/_sandbox/faults", json={"broker": "kite", **fault}, timeout=5)

    assert response.status_code == 400 and reason in response.json()["error"]


def test_an_algo_id_longer_than_kite_takes_is_refused(sandbox):
    kite = kite_session(sandbox)

    with pytest.raises(kite_exceptions.InputException, match="algo_id"):
        place(kite, algo_id="x" * 21)


# --- a user's order rate ------------------------------------------------------------------------


def test_an_eleventh_order_call_in_a_second_is_kites_429_and_not_taken(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:ITC": 430.0})
    order_id = place(kite, tradingsymbol="ITC", order_type="LIMIT", price=400.0, quantity=1)
    for step in range(9):  # place, modify and cancel count alike
        kite.modify_order("regular", order_id, price=399.0 - step)

    with pytest.raises(kite_exceptions.NetworkException, match="Too many requests") as refused:
        kite.cancel_order("regular", order_id)

    assert refused.value.code == 429
    assert kite.order_history(order_id)[-1]["status"] == "OPEN"  # reads are not order calls


def test_four_hundred_order_calls_a_minute_then_kites_429(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:ITC": 430.0})
    rate = sandbox.state.kite.order_rate
    # 399 calls of the last minute, as the user's other apps made them, each out of its own second.
    with rate._lock:
        rate._calls["AB1234"] = deque(time.monotonic() - 50 + index / 10 for index in range(399))
    place(kite, tradingsymbol="ITC", order_type="LIMIT", price=400.0, quantity=1)

    with pytest.raises(kite_exceptions.NetworkException, match="Too many requests"):
        place(kite, tradingsymbol="ITC", order_type="LIMIT", price=400.0, quantity=1)
