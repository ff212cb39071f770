"""The Kite sandbox over real HTTP for its own tests: one sandbox per test module, reset before every
test, a receiver for its postbacks, and the official kiteconnect client logged in to it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from kiteconnect import KiteConnect

from brokers.sandbox.market import load_json_fixture
from brokers.sandbox.testing import start_sandbox

API_KEY = "test_key"
API_SECRET = "test_secret"
REDIRECT_URL = "http://127.0.0.1:9/callback?source=kite"


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

    def wait_for(predicate, timeout=10.0):
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
def latency_waits() -> list[float]:
    """The waits the sandbox's latency faults asked for: recorded, never slept, so no test waits on a clock."""
    return []


@pytest.fixture(scope="module")
def sandbox(postback_receiver, latency_waits):
    app = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "redirect_url": REDIRECT_URL,
        "postback_url": postback_receiver.url,
    }
    with start_sandbox(apps=[app], tick_seconds=None, sleep=latency_waits.append) as handle:
        yield handle


@pytest.fixture(autouse=True)
def fresh_sandbox(sandbox, postback_receiver, latency_waits):
    """One sandbox serves the module, so every test starts from the state it started in."""
    sandbox.reset()
    postback_receiver.received.clear()
    latency_waits.clear()


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
