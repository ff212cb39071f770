"""End to end over the real ASGI server: Thor served as in production (`python -m thor.serve`, uvicorn)
on the test database and Redis (channels-redis), a browser-like `websockets` client with a ticket,
orders over real HTTP."""

import json
import os
import signal
import socket as sockets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts.tests.conftest import order_body
from accounts.tests.test_consumers import access_token
from brokers.sandbox.testing import start_sandbox, submit_login
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, SPA

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url() -> str:
    db = django_settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def start_served(port: int, **extra_env: str) -> subprocess.Popen:
    """Thor under uvicorn on `port`, on this test's database and Redis, once it answers."""
    http = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "thor.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "CELERY_BROKER_URL": "",
        "DEBUG": "false",
        "THOR_PUBLIC_URL": http,
        "THOR_PAPER_PRICE_SOURCE": "fixed",
        "LOG_LEVEL": "WARNING",
        # Its stop is not under test here (thor/tests/test_server_logs.py): no grace for what is still open.
        "THOR_SHUTDOWN_SECONDS": "1",
        **extra_env,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "thor.serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            raise AssertionError(server.stderr.read().decode()[-2000:])
        try:
            requests.get(f"{http}/api/health/", timeout=2)
            return server
        except (requests.ConnectionError, requests.Timeout):  # a read timeout on a busy machine is "not yet"
            if time.monotonic() >= deadline:
                stop_served(server)
                raise AssertionError("Thor did not start within 30 s") from None
            time.sleep(0.2)


def stop_served(server: subprocess.Popen, *, kill: bool = False) -> None:
    """SIGTERM (or, `kill`, SIGKILL at once: a crash) to the server and its workers."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def serve(port: int, **extra_env: str):
    """Thor under uvicorn on `port`, on this test's database and Redis; stopped with its workers."""
    server = start_served(port, **extra_env)
    try:
        yield f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    finally:
        stop_served(server)


@pytest.fixture
def served_thor():
    yield from serve(free_port())


@pytest.fixture
def served_thor_and_kite():
    """The sandbox's Kite, whose app sends its postbacks to a served Thor that trades through it."""
    port = free_port()
    http = f"http://127.0.0.1:{port}"
    app = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "redirect_url": f"{http}/api/auth/broker/callback",
        "postback_url": f"{http}/api/brokers/kite/postback/",
    }
    with start_sandbox(apps=[app], tick_seconds=None) as kite:
        kite_env = {"THOR_KITE_API_ROOT": kite.url, "THOR_KITE_LOGIN_URL": f"{kite.url}/connect/login"}
        for served in serve(port, **kite_env):
            yield served, kite


def link_kite(http: str, headers: dict) -> int:
    """Seed 000's link as a browser makes it (Thor's start, the sandbox's login form, Thor's callback);
    returns the live account's id."""
    start = requests.post(
        f"{http}/api/auth/broker/test-oauth",
        json={"api_key": API_KEY, "api_secret": API_SECRET, "frontend_url": SPA},
        headers=headers,
        timeout=30,
    )
    assert start.status_code == 200, start.text
    login = submit_login(start.json()["oauth_url"], user_id="AB1234", password="sandbox")
    assert login.status_code == 302, login.text
    callback = requests.get(login.headers["Location"], allow_redirects=False, timeout=30)
    assert "status=success" in callback.headers.get("Location", ""), callback.headers
    accounts = requests.get(f"{http}/api/accounts", headers=headers, timeout=30).json()
    return next(account["id"] for account in accounts if account["mode"] == "live")


def buy_ticket(http: str, headers: dict) -> str:
    response = requests.post(f"{http}/api/ws/ticket", headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


def messages(socket, count: int) -> list[dict]:
    return [json.loads(socket.recv(timeout=10)) for _ in range(count)]


def test_a_paper_order_placed_over_http_arrives_on_a_ticket_socket_and_a_reconnect_resyncs(served_thor, alice):
    http, ws = served_thor
    headers = {"Authorization": f"Bearer {access_token(alice)}"}
    ticket = buy_ticket(http, headers)

    with connect(f"{ws}/ws/orders/primary?ticket={ticket}") as socket:
        (subscribed,) = messages(socket, 1)
        placed = requests.post(f"{http}/api/accounts/primary/orders", json=order_body(), headers=headers, timeout=30)
        live = messages(socket, 4)

    assert placed.status_code == 201, placed.text
    account_id = subscribed["account_id"]
    assert subscribed == {"type": "subscribed", "account_id": account_id, "seq": 0}
    assert [(m["type"], m["seq"]) for m in live] == [
        ("order_update", 1),
        ("order_update", 2),
        ("position_update", 3),
        ("funds_update", 4),
    ]
    assert live[1]["data"] == placed.json()

    # The ticket is spent; a new one reconnects, and the client asks for what came after what it saw.
    with connect(f"{ws}/ws/orders/primary?ticket={ticket}") as refused, pytest.raises(ConnectionClosed) as closed:
        refused.recv(timeout=10)
    assert closed.value.rcvd.code == 4401
    with connect(f"{ws}/ws/orders/primary?ticket={buy_ticket(http, headers)}") as socket:
        (subscribed,) = messages(socket, 1)
        socket.send(json.dumps({"action": "resync", "account_id": account_id, "since_seq": 1}))
        resent = messages(socket, 4)

    assert subscribed["seq"] == 4
    assert [(m["type"], m["seq"], m["data"]) for m in resent[:3]] == [
        (m["type"], m["seq"], m["data"]) for m in live[1:]
    ]
    assert resent[0] == live[1]
    assert resent[3] == {"type": "resynced", "account_id": account_id, "seq": 4, "complete": True}


def test_a_live_kite_order_filled_at_the_sandbox_arrives_by_postback(served_thor_and_kite, alice):
    (http, ws), kite = served_thor_and_kite
    headers = {"Authorization": f"Bearer {access_token(alice)}"}
    account_id = link_kite(http, headers)
    requests.post(f"{kite.url}/_sandbox/prices", json={"NSE:INFY": 1500.0}, timeout=5).raise_for_status()

    with connect(f"{ws}/ws/orders/{account_id}?ticket={buy_ticket(http, headers)}") as socket:
        (subscribed,) = messages(socket, 1)
        placed = requests.post(
            f"{http}/api/accounts/{account_id}/orders",
            json=order_body(order_type="LIMIT", price="1400.00"),
            headers=headers,
            timeout=30,
        )
        assert placed.status_code == 201, placed.text
        resting = json.loads(socket.recv(timeout=10))
        while resting["data"]["status"] != "OPEN":
            resting = json.loads(socket.recv(timeout=10))
        # The market comes down to the limit: the sandbox fills the order and posts it back to Thor.
        requests.post(f"{kite.url}/_sandbox/prices", json={"NSE:INFY": 1390.0}, timeout=5).raise_for_status()
        filled, positions, funds = messages(socket, 3)

    assert subscribed == {"type": "subscribed", "account_id": account_id, "seq": 0}
    assert (filled["type"], filled["data"]["id"], filled["data"]["status"]) == (
        "order_update",
        placed.json()["id"],
        "COMPLETE",
    )
    assert (positions["type"], positions["seq"], funds["type"], funds["seq"]) == (
        "position_update",
        filled["seq"] + 1,
        "funds_update",
        filled["seq"] + 2,
    )
    # The broker's positions, read after the fill (the sandbox's account holds more than this one).
    assert "INFY" in [position["tradingsymbol"] for position in positions["data"]]
    assert funds["data"]["currency"] == "INR"
