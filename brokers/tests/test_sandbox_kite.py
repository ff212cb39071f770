"""The Kite sandbox driven over real HTTP by the official kiteconnect client (no Django, no DB)."""

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_exceptions

from brokers.sandbox.market import load_json_fixture
from brokers.sandbox.testing import start_sandbox

API_KEY = "test_key"
API_SECRET = "test_secret"
REDIRECT_URL = "http://127.0.0.1:9/callback?source=kite"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def postback_receiver():
    received: list[dict] = []
    arrived = threading.Condition()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with arrived:
                received.append(json.loads(body))
                arrived.notify_all()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def wait_for(predicate, timeout=3.0):
        with arrived:
            assert arrived.wait_for(lambda: any(predicate(item) for item in received), timeout)
            return [item for item in received if predicate(item)]

    server.wait_for = wait_for
    server.received = received
    server.url = f"http://127.0.0.1:{server.server_address[1]}/postback"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sandbox(postback_receiver):
    app = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "redirect_url": REDIRECT_URL,
        "postback_url": postback_receiver.url,
    }
    with start_sandbox(apps=[app], tick_seconds=None) as handle:
        yield handle


@pytest.fixture(autouse=True)
def fresh_sandbox(sandbox, postback_receiver):
    """One sandbox serves the module, so every test starts from the state it started in."""
    sandbox.reset()
    postback_receiver.received.clear()


def login(sandbox, user_id="AB1234", password="sandbox", redirect_params="state=signed.state&next=%2Fhome"):
    return requests.post(
        f"{sandbox.url}/connect/login",
        data={"api_key": API_KEY, "user_id": user_id, "password": password, "redirect_params": redirect_params},
        allow_redirects=False,
        timeout=5,
    )


def request_token(sandbox, user_id="AB1234") -> str:
    location = login(sandbox, user_id=user_id).headers["Location"]
    return parse_qs(urlsplit(location).query)["request_token"][0]


def kite_session(sandbox, user_id="AB1234") -> KiteConnect:
    kite = KiteConnect(api_key=API_KEY, root=sandbox.url)
    kite.generate_session(request_token(sandbox, user_id), api_secret=API_SECRET)
    return kite


def pin(sandbox, prices: dict) -> None:
    response = requests.post(f"{sandbox.url}/_sandbox/prices", json=prices, timeout=5)
    assert response.status_code == 200, response.text


def add_fault(sandbox, **fault) -> None:
    response = requests.post(f"{sandbox.url}/_sandbox/faults", json={"broker": "kite", **fault}, timeout=5)
    assert response.status_code == 201, response.text


def fixture_data(name):
    return load_json_fixture(name)["data"]


# --- login and session ----------------------------------------------------------------------------


def test_login_form_redirects_with_request_token_and_redirect_params(sandbox):
    form = requests.get(
        f"{sandbox.url}/connect/login",
        params={"v": "3", "api_key": API_KEY, "redirect_params": "state=signed.state&next=%2Fhome"},
        timeout=5,
    )
    assert form.status_code == 200
    assert "text/html" in form.headers["Content-Type"]
    assert 'name="redirect_params" value="state=signed.state&amp;next=%2Fhome"' in form.text

    wrong = login(sandbox, password="nope")
    assert wrong.status_code == 401
    assert "Invalid user ID or password." in wrong.text

    response = login(sandbox)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "http://127.0.0.1:9/callback"
    query = parse_qs(location.query)
    assert query["source"] == ["kite"]
    assert query["action"] == ["login"] and query["status"] == ["success"]
    assert query["state"] == ["signed.state"] and query["next"] == ["/home"]
    assert len(query["request_token"][0]) >= 20


def test_login_form_with_unknown_api_key_is_an_html_error(sandbox):
    response = requests.get(f"{sandbox.url}/connect/login", params={"v": "3", "api_key": "nope"}, timeout=5)
    assert response.status_code == 400
    assert "text/html" in response.headers["Content-Type"]


def test_generate_session_checks_checksum_and_refuses_reused_request_token(sandbox):
    token = request_token(sandbox, user_id="CD5678")
    kite = KiteConnect(api_key=API_KEY, root=sandbox.url)
    with pytest.raises(kite_exceptions.TokenException):
        kite.generate_session(token, api_secret="wrong secret")

    session = kite.generate_session(token, api_secret=API_SECRET)
    assert set(session) == set(fixture_data("generate_session.json"))
    assert session["user_id"] == "CD5678"
    assert session["refresh_token"] == ""
    assert kite.profile()["user_id"] == "CD5678"

    with pytest.raises(kite_exceptions.TokenException, match=r"Token is invalid or has expired\."):
        KiteConnect(api_key=API_KEY, root=sandbox.url).generate_session(token, api_secret=API_SECRET)


def test_invalidated_or_expired_access_token_raises_token_exception(sandbox):
    kite = kite_session(sandbox)
    kite.invalidate_access_token()
    with pytest.raises(kite_exceptions.TokenException) as raised:
        kite.profile()
    assert raised.value.code == 403

    expiring = kite_session(sandbox, user_id="CD5678")
    sandbox.state.kite.expire_sessions(user_id="CD5678")
    with pytest.raises(kite_exceptions.TokenException, match="expired"):
        expiring.holdings()


# --- reads ----------------------------------------------------------------------------------------


def test_portfolio_shapes_match_the_kite_mocks(sandbox):
    kite = kite_session(sandbox)
    profile = kite.profile()
    assert set(profile) == set(fixture_data("profile.json"))
    assert profile["user_id"] == "AB1234"

    margins = kite.margins()
    assert margins.keys() == fixture_data("margins.json").keys()
    assert margins["equity"].keys() == fixture_data("margins.json")["equity"].keys()
    assert kite.margins("commodity").keys() == fixture_data("margins.json")["commodity"].keys()

    holdings = kite.holdings()
    assert [set(item) for item in holdings] == [set(item) for item in fixture_data("holdings.json")]
    positions = kite.positions()
    assert positions.keys() == {"net", "day"}
    fixture_position_keys = set(fixture_data("positions.json")["net"][0])
    assert all(set(item) == fixture_position_keys for item in positions["net"] + positions["day"])


def test_quotes_by_symbol_and_token(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:INFY": 1500.5})
    quotes = kite.quote("NSE:INFY", "408065", "NSE:NOSUCH")
    assert set(quotes) == {"NSE:INFY", "408065"}
    assert set(quotes["NSE:INFY"]) == set(fixture_data("quote.json")["NSE:INFY"])
    assert quotes["408065"]["last_price"] == 1500.5
    assert kite.ltp("NSE:INFY") == {"NSE:INFY": {"instrument_token": 408065, "last_price": 1500.5}}
    assert set(kite.ohlc("NSE:INFY")["NSE:INFY"]) == set(fixture_data("ohlc.json")["NSE:INFY"])


def test_prices_are_readable_without_a_session_and_without_being_counted(sandbox):
    pin(sandbox, {"NSE:INFY": 1500.5})
    requests.delete(f"{sandbox.url}/_sandbox/stats", timeout=5)

    response = requests.get(f"{sandbox.url}/_sandbox/prices", params={"i": ["NSE:INFY", "NSE:NOSUCH"]}, timeout=5)

    assert response.status_code == 200
    assert response.json() == {"NSE:INFY": 1500.5}
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["total"] == 0


def test_instruments_are_csv(sandbox):
    kite = KiteConnect(api_key=API_KEY, root=sandbox.url)
    everything = kite.instruments()
    nse = kite.instruments("NSE")
    assert {row["exchange"] for row in nse} == {"NSE"}
    assert any(row["tradingsymbol"] == "INFY" for row in nse)
    assert len(everything) > len(kite.instruments("NFO")) > 0


# --- orders ---------------------------------------------------------------------------------------


def place(kite, **overrides) -> str:
    params = {
        "variety": "regular",
        "exchange": "NSE",
        "tradingsymbol": "INFY",
        "transaction_type": "BUY",
        "quantity": 2,
        "product": "CNC",
        "order_type": "MARKET",
        "market_protection": -1,
    }
    return kite.place_order(**{key: value for key, value in {**params, **overrides}.items() if value is not None})


def net_quantity(kite, tradingsymbol, product="CNC") -> int:
    for position in kite.positions()["net"]:
        if (position["tradingsymbol"], position["product"]) == (tradingsymbol, product):
            return position["quantity"]
    return 0


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


# Kite refuses MARKET and SL-M orders without market protection since April 2026.


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


# --- faults and stats -----------------------------------------------------------------------------


def test_429_fault_raises_network_exception(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="429", path="/portfolio", count=1)
    with pytest.raises(kite_exceptions.NetworkException) as raised:
        kite.positions()
    assert raised.value.code == 429
    kite.positions()


def test_5xx_faults(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="5xx", count=1)
    with pytest.raises(kite_exceptions.GeneralException) as raised:
        kite.holdings()
    assert raised.value.code == 500

    add_fault(sandbox, kind="5xx", status=503, count=1)
    with pytest.raises(kite_exceptions.NetworkException) as unavailable:
        kite.holdings()
    assert unavailable.value.code == 503


def test_latency_fault_delays_only_matching_paths(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="latency", ms=300, path="/user/margins", count=1)

    kite.profile()
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json()[0]["count"] == 1

    started = time.monotonic()
    kite.margins()
    assert time.monotonic() - started >= 0.3
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json() == []


def test_token_expired_fault(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="token_expired", path="/orders", count=1)
    with pytest.raises(kite_exceptions.TokenException):
        kite.orders()
    kite.orders()


def test_drop_fault_closes_the_connection(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="drop", count=1)
    with pytest.raises(requests.ConnectionError):
        kite.profile()
    assert kite.profile()["user_id"] == "AB1234"


def test_fault_count_applies_to_that_many_calls_and_faults_can_be_cleared(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="429", count=2)
    for _ in range(2):
        with pytest.raises(kite_exceptions.NetworkException):
            kite.profile()
    kite.profile()

    add_fault(sandbox, kind="429")
    for _ in range(3):
        with pytest.raises(kite_exceptions.NetworkException):
            kite.profile()
    assert requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).status_code == 200
    kite.profile()


def test_schwab_faults_do_not_touch_kite(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, broker="schwab", kind="5xx")
    kite.profile()


def test_invalid_faults_are_refused(sandbox):
    for fault in ({"broker": "kite", "kind": "flood"}, {"broker": "ib", "kind": "429"}, {"broker": "kite"}, []):
        response = requests.post(f"{sandbox.url}/_sandbox/faults", json=fault, timeout=5)
        assert response.status_code == 400, fault
    response = requests.post(f"{sandbox.url}/_sandbox/faults", data="{not json", timeout=5)
    assert response.status_code == 400


def test_stats_count_calls_but_not_control_calls(sandbox):
    kite = kite_session(sandbox)
    assert requests.delete(f"{sandbox.url}/_sandbox/stats", timeout=5).status_code == 200
    kite.positions()
    kite.positions()
    add_fault(sandbox, kind="429", count=1)
    with pytest.raises(kite_exceptions.NetworkException):
        kite.holdings()

    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()
    assert stats["total"] == 3
    assert stats["by_path"] == {"GET /portfolio/positions": 2, "GET /portfolio/holdings": 1}
    assert stats["by_status"] == {"200": 2, "429": 1}
    assert set(stats["postbacks"]) == {"sent", "failed"}


def test_reset_forgets_what_tests_did_but_keeps_the_apps_it_started_with(sandbox):
    kite = kite_session(sandbox)
    quantity_before = net_quantity(kite, "INFY")
    pin(sandbox, {"NSE:INFY": 1.5})
    place(kite, quantity=1)
    assert net_quantity(kite, "INFY") == quantity_before + 1
    add_fault(sandbox, kind="429", path="/quote")
    late_app = {"api_key": "late_key", "api_secret": "late_secret", "redirect_url": "http://127.0.0.1:9/cb"}
    requests.post(f"{sandbox.url}/_sandbox/apps", json=late_app, timeout=5).raise_for_status()

    sandbox.reset()

    with pytest.raises(kite_exceptions.TokenException):
        kite.orders()
    fresh = kite_session(sandbox)
    assert fresh.orders() == [] and fresh.trades() == []
    assert fresh.ltp("NSE:INFY")["NSE:INFY"]["last_price"] != 1.5
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json() == []
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["by_path"].keys() == {
        "POST /connect/login",
        "POST /session/token",
        "GET /orders",
        "GET /trades",
        "GET /quote/ltp",
    }
    late_login = requests.get(f"{sandbox.url}/connect/login", params={"v": "3", "api_key": "late_key"}, timeout=5)
    assert late_login.status_code == 400
    assert net_quantity(fresh, "INFY") == quantity_before


# --- control API and hostile input ----------------------------------------------------------------


def test_register_app_over_http(sandbox):
    app = {"api_key": "late_key", "api_secret": "late_secret", "redirect_url": "http://127.0.0.1:9/cb"}
    assert requests.post(f"{sandbox.url}/_sandbox/apps", json=app, timeout=5).status_code == 201
    form = requests.get(f"{sandbox.url}/connect/login", params={"v": "3", "api_key": "late_key"}, timeout=5)
    assert form.status_code == 200
    missing = requests.post(f"{sandbox.url}/_sandbox/apps", json={"api_key": "x"}, timeout=5)
    assert missing.status_code == 400
    assert "api_secret" in missing.json()["error"]


def test_hostile_requests_get_clean_errors(sandbox):
    unknown = requests.get(f"{sandbox.url}/no/such/path", timeout=5)
    assert unknown.status_code == 404
    assert unknown.json()["error_type"] == "GeneralException"

    wrong_method = requests.patch(f"{sandbox.url}/user/profile", timeout=5)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["status"] == "error"

    huge = requests.post(f"{sandbox.url}/session/token", data=b"a" * (1024 * 1024 + 1), timeout=5)
    assert huge.status_code == 413
    assert huge.json()["error_type"] == "InputException"

    garbage = requests.post(
        f"{sandbox.url}/session/token",
        data=b"\xff\xfe=%%%&&==api_key",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert garbage.status_code == 400
    assert garbage.json()["error_type"] == "InputException"

    no_auth = requests.get(f"{sandbox.url}/portfolio/holdings", headers={"Authorization": "token :"}, timeout=5)
    assert no_auth.status_code == 403
    assert no_auth.json() == {
        "status": "error",
        "message": "Incorrect `api_key` or `access_token`.",
        "error_type": "TokenException",
        "data": None,
    }
    assert "Traceback" not in unknown.text + wrong_method.text + huge.text + garbage.text


def test_malformed_http_never_breaks_the_server(sandbox):
    host, port = urlsplit(sandbox.url).hostname, urlsplit(sandbox.url).port
    for raw in (b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", b"POST /orders/regular HTTP/1.1\r\nContent-Length: nope\r\n\r\n"):
        with socket.create_connection((host, port), timeout=5) as connection:
            connection.sendall(raw)
            reply = connection.recv(65536)
            assert reply.startswith(b"HTTP/1.")
            assert b"Traceback" not in reply
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).status_code == 200


def test_stop_loss_order_waits_for_its_trigger(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:HDFCBANK": 1650.0})
    order_id = place(kite, tradingsymbol="HDFCBANK", transaction_type="SELL", order_type="SL-M", trigger_price=1600.0)
    assert kite.order_history(order_id)[-1]["status"] == "TRIGGER PENDING"

    pin(sandbox, {"NSE:HDFCBANK": 1599.0})
    order = kite.order_history(order_id)[-1]
    assert (order["status"], order["average_price"]) == ("COMPLETE", 1599.0)
