"""The Schwab sandbox's streamer over a real WebSocket, spoken by hand as schwab-py speaks it: the address from
userPreference, ADMIN LOGIN with the access token, LEVELONE_EQUITIES SUBS/ADD/UNSUBS, `response` codes,
`data` frames of changed numbered fields at the REST quote's prices, `notify` heartbeats."""

import contextlib
import json
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from brokers.sandbox.server import SandboxServer
from brokers.sandbox.testing import SandboxHandle
from brokers.tests.schwab_sandbox_calls import CALLBACK, CLIENT_ID, CLIENT_SECRET, api, pin, tokens_for
from brokers.tests.test_sandbox_kite_ticker import FrozenClock

WAIT_SECONDS = 5


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture
def sandbox(clock):
    server = SandboxServer(
        schwab_apps=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": CALLBACK}],
        tick_seconds=None,
        ticker_seconds=0.05,
        clock=clock,
    )
    with SandboxHandle(server) as running:
        yield running


@pytest.fixture
def access(sandbox) -> str:
    return tokens_for(sandbox)["access_token"]


@pytest.fixture
def info(sandbox, access) -> dict:
    return api(sandbox, "GET", "/trader/v1/userPreference", access).json()["streamerInfo"][0]


class Streamer:
    """One connection to the sandbox's streamer, with the ids userPreference gave."""

    def __init__(self, socket: ClientConnection, info: dict):
        self.socket, self.info, self.next_id = socket, info, 0
        self.skipped: list[dict] = []  # frames read while looking for another kind, in order

    def send(self, service: str, command: str, **parameters) -> str:
        request_id, self.next_id = str(self.next_id), self.next_id + 1
        request = {
            "service": service,
            "command": command,
            "requestid": request_id,
            "SchwabClientCustomerId": self.info["schwabClientCustomerId"],
            "SchwabClientCorrelId": self.info["schwabClientCorrelId"],
            "parameters": parameters,
        }
        self.socket.send(json.dumps({"requests": [request]}))
        return request_id

    def login(self, token: str) -> dict:
        request_id = self.send(
            "ADMIN",
            "LOGIN",
            Authorization=token,
            SchwabClientChannel=self.info["schwabClientChannel"],
            SchwabClientFunctionId=self.info["schwabClientFunctionId"],
        )
        return self.response(request_id)

    def next(self, kind: str) -> dict:
        """The next frame carrying `kind` ("response", "data" or "notify"), the others kept for later."""
        for index, frame in enumerate(self.skipped):
            if kind in frame:
                return self.skipped.pop(index)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            frame = json.loads(self.socket.recv(timeout=max(0.01, deadline - time.monotonic())))
            if kind in frame:
                return frame
            self.skipped.append(frame)

    def response(self, request_id: str) -> dict:
        answer = self.next("response")["response"][0]
        assert answer["requestid"] == request_id
        return answer

    def entries(self) -> dict[str, dict]:
        return {entry["key"]: entry for entry in self.next("data")["data"][0]["content"]}


@pytest.fixture
def open_streamer(info):
    with contextlib.ExitStack() as opened:
        yield lambda: Streamer(opened.enter_context(connect(info["streamerSocketUrl"], open_timeout=5)), info)


def quote(sandbox, access, symbol) -> dict:
    return api(sandbox, "GET", "/marketdata/v1/quotes", access, params={"symbols": symbol}).json()[symbol]["quote"]


def test_user_preference_gives_the_sandboxs_own_streamer(sandbox, info):
    assert info["streamerSocketUrl"] == sandbox.url.replace("http://", "ws://") + "/schwab-streamer/ws"
    assert info["schwabClientChannel"] and info["schwabClientFunctionId"]


def test_subscribed_symbols_stream_the_quotes_prices_then_only_what_changed(sandbox, access, open_streamer):
    streamer = open_streamer()
    assert streamer.login(access)["content"]["code"] == 0

    answer = streamer.response(streamer.send("LEVELONE_EQUITIES", "SUBS", keys="AAPL,NOSUCH", fields="0,1,2,3,8"))
    assert (answer["service"], answer["command"], answer["content"]["code"]) == ("LEVELONE_EQUITIES", "SUBS", 0)
    first = streamer.entries()
    assert set(first) == {"AAPL"}  # an unknown symbol is taken, and never streams
    rest = quote(sandbox, access, "AAPL")
    assert {field: first["AAPL"][field] for field in ("1", "2", "3", "8")} == {
        "1": rest["bidPrice"],
        "2": rest["askPrice"],
        "3": rest["lastPrice"],
        "8": rest["totalVolume"],
    }
    assert first["AAPL"]["cusip"] and first["AAPL"]["delayed"] is False

    pin(sandbox, AAPL=201.5)
    moved = streamer.entries()["AAPL"]
    assert (moved["1"], moved["2"], moved["3"]) == (201.49, 201.51, 201.5)
    assert "8" not in moved and "cusip" not in moved  # only what changed

    streamer.response(streamer.send("LEVELONE_EQUITIES", "ADD", keys="MSFT", fields="0,1,2,3,8"))
    assert set(streamer.entries()) == {"MSFT"}
    streamer.response(streamer.send("LEVELONE_EQUITIES", "UNSUBS", keys="AAPL"))
    listing = requests.get(f"{sandbox.url}/_sandbox/schwab/streamer", timeout=5).json()
    assert [connection["symbols"] for connection in listing["connections"]] == [["MSFT", "NOSUCH"]]
    # Nothing moves under a frozen clock: heartbeats keep the connection alive.
    assert "heartbeat" in streamer.next("notify")["notify"][0]


def test_a_bad_token_is_denied_with_code_3_and_the_connection_closed(sandbox, access, open_streamer):
    streamer = open_streamer()
    answer = streamer.login("I0.not-a-token@")
    assert (answer["service"], answer["command"], answer["content"]["code"]) == ("ADMIN", "LOGIN", 3)
    with pytest.raises(ConnectionClosed):
        streamer.socket.recv(timeout=WAIT_SECONDS)

    before_login = open_streamer()
    assert before_login.response(before_login.send("LEVELONE_EQUITIES", "SUBS", keys="AAPL"))["content"]["code"] == 3

    wrong_customer = open_streamer()
    wrong_customer.info = {**wrong_customer.info, "schwabClientCustomerId": "SOMEONE-ELSE"}
    assert wrong_customer.login(access)["content"]["code"] == 3
    listing = requests.get(f"{sandbox.url}/_sandbox/schwab/streamer", timeout=5).json()
    assert listing["logins_denied"] == 2


def test_bad_requests_get_schwabs_codes_and_a_second_login_closes_the_first(sandbox, access, open_streamer):
    streamer = open_streamer()
    streamer.login(access)
    streamer.socket.send("{not json")
    assert streamer.next("response")["response"][0]["content"]["code"] == 21
    assert streamer.response(streamer.send("LEVELONE_EQUITIES", "SUBS", keys=7))["content"]["code"] == 21
    assert streamer.response(streamer.send("LEVELONE_OPTIONS", "SUBS", keys="X"))["content"]["code"] == 11
    too_many = ",".join(f"S{number}" for number in range(501))
    assert streamer.response(streamer.send("LEVELONE_EQUITIES", "SUBS", keys=too_many))["content"]["code"] == 19

    second = open_streamer()
    assert second.login(access)["content"]["code"] == 0
    assert streamer.next("notify")["notify"][0]["content"]["code"] == 12
    with pytest.raises(ConnectionClosed):
        while True:
            streamer.socket.recv(timeout=WAIT_SECONDS)
