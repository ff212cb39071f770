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


@pytest.fixture
def served_thor():
    """Thor under uvicorn on a free port, on this test's database and Redis; stopped with its workers."""
    port = free_port()
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
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "thor.serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                requests.get(f"{http}/api/health/", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "Thor did not start within 30 s"
                time.sleep(0.2)
        yield http, f"ws://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


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
