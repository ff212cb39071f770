"""Kite's streaming quotes at the sandbox's `/ws`, driven by the official `KiteTicker` over a real WebSocket:
the ticks carry the REST quote's prices of the same moment, in each mode, and the stream refuses what Kite
refuses."""

import json
import threading
import time
from email.message import Message

import pytest
import requests
from django.core.management import CommandError, call_command

from brokers.sandbox.kite_ticker import MAX_CONNECTIONS_PER_API_KEY, MAX_TOKENS_PER_CONNECTION, Admission
from brokers.sandbox.testing import start_sandbox
from brokers.tests.kite_sandbox_calls import API_KEY, API_SECRET, REDIRECT_URL, kite_session
from brokers.tests.kite_ticker_client import TickerClient

pytestmark = pytest.mark.e2e

INFY, RELIANCE, NIFTY_50 = 408065, 738561, 256265
TICK_SECONDS = 0.1


class FrozenClock:
    """The market's time, moved only by the test, so a tick and a quote read the same moment."""

    def __init__(self):
        self.now = time.time()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture(scope="module")
def clock():
    return FrozenClock()


@pytest.fixture(scope="module")
def sandbox(clock):
    app = {"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": REDIRECT_URL}
    with start_sandbox(apps=[app], tick_seconds=None, ticker_seconds=TICK_SECONDS, clock=clock) as handle:
        yield handle


@pytest.fixture
def kite(sandbox):
    sandbox.reset()
    return kite_session(sandbox)


@pytest.fixture
def client(sandbox, kite):
    clients = []

    def connect(access_token=None) -> TickerClient:
        ticker = TickerClient(sandbox.url, API_KEY, access_token or kite.access_token).connect()
        clients.append(ticker)
        return ticker

    yield connect
    for ticker in clients:
        ticker.close()
    requests.post(f"{sandbox.url}/_sandbox/ticker/drop", timeout=5)


def connected(ticker: TickerClient) -> TickerClient:
    ticker.wait_for(lambda: ticker.connects and ticker.ticker.is_connected())
    return ticker


def subscriptions(sandbox) -> list[dict]:
    return requests.get(f"{sandbox.url}/_sandbox/ticker", timeout=5).json()


def at_this_moment(tick: dict | None, clock: FrozenClock) -> dict | None:
    moment = tick and tick.get("exchange_timestamp")
    return tick if moment and moment.timestamp() == int(clock()) else None


def nifty_future_token(sandbox) -> int:
    row = next(
        row for row in sandbox.state.catalogue.all_rows if row["name"] == "NIFTY" and row["instrument_type"] == "FUT"
    )
    return int(row["instrument_token"])


def test_full_ticks_carry_the_rest_quote_of_the_same_moment(sandbox, kite, client, clock):
    future = nifty_future_token(sandbox)
    ticker = connected(client())
    ticker.call("subscribe", [INFY, future])
    ticker.call("set_mode", ticker.ticker.MODE_FULL, [INFY, future])

    for _ in range(2):
        clock.advance(7)
        quotes = kite.quote([str(INFY), str(future)])
        for token in (INFY, future):
            # The first tick built at this moment (one already on the wire carries the moment before).
            tick = ticker.wait_for(lambda token=token: at_this_moment(ticker.latest(token), clock))
            quote = quotes[str(token)]
            assert tick["mode"] == "full"
            assert tick["last_price"] == quote["last_price"]
            assert tick["ohlc"] == quote["ohlc"]
            assert tick["volume_traded"] == quote["volume"]
            assert tick["oi"] == quote["oi"]
            assert tick["total_buy_quantity"] == quote["buy_quantity"]
            assert tick["depth"] == {
                side: [
                    {"quantity": level["quantity"], "price": level["price"], "orders": level["orders"]}
                    for level in levels
                ]
                for side, levels in quote["depth"].items()
            }


def test_subscribe_defaults_to_quote_mode_and_ltp_mode_sends_the_price_alone(sandbox, kite, client):
    ticker = connected(client())
    ticker.call("subscribe", [RELIANCE, NIFTY_50])
    quote_tick = ticker.wait_for(lambda: ticker.latest(RELIANCE))
    assert quote_tick["mode"] == "quote" and "depth" not in quote_tick
    index_tick = ticker.wait_for(lambda: ticker.latest(NIFTY_50))
    assert index_tick["tradable"] is False
    assert index_tick["last_price"] == kite.quote([str(NIFTY_50)])[str(NIFTY_50)]["last_price"]

    ticker.call("set_mode", ticker.ticker.MODE_LTP, [RELIANCE])
    ltp_tick = ticker.wait_for(lambda: (tick := ticker.latest(RELIANCE)) and tick["mode"] == "ltp" and tick)
    assert set(ltp_tick) == {"tradable", "mode", "instrument_token", "last_price"}


def test_unsubscribe_stops_the_ticks_of_that_token_only(sandbox, client):
    ticker = connected(client())
    ticker.call("subscribe", [INFY, RELIANCE])
    ticker.wait_for(lambda: ticker.latest(INFY) and ticker.latest(RELIANCE))

    ticker.call("unsubscribe", [INFY])
    ticker.wait_for(lambda: str(INFY) not in subscriptions(sandbox)[0]["modes"])
    time.sleep(TICK_SECONDS * 2)  # a message already on the wire may still carry it
    ticker.ticks.clear()
    ticker.wait_for(lambda: len([tick for tick in ticker.ticks if tick["instrument_token"] == RELIANCE]) >= 5)
    assert ticker.latest(INFY) is None
    assert subscriptions(sandbox)[0]["modes"] == {str(RELIANCE): "quote"}


def test_a_bad_access_token_is_refused_at_the_upgrade_as_kite_refuses_it(client):
    ticker = client(access_token="not-a-session")
    code, reason = ticker.wait_for(lambda: ticker.errors and ticker.errors[0])
    assert code == 1006
    assert "403 - Forbidden" in str(reason)
    assert ticker.connects == 0


def test_an_unknown_api_key_is_refused_too(sandbox, kite):
    ticker = TickerClient(sandbox.url, "someone-else", kite.access_token).connect()
    try:
        _code, reason = ticker.wait_for(lambda: ticker.errors and ticker.errors[0])
        assert "403 - Forbidden" in str(reason)
    finally:
        ticker.close()


def test_malformed_messages_are_answered_with_an_error_and_the_stream_goes_on(sandbox, client):
    ticker = connected(client())
    ticker.call("subscribe", [INFY])
    for raw in (b"{not json", json.dumps({"a": "subscribe", "v": "INFY"}).encode(), b'{"a": "explode"}', b"[]"):
        ticker.errors.clear()
        blocking_send(ticker, raw)
        code, message = ticker.wait_for(lambda: ticker.errors and ticker.errors[0])
        assert code == 0 and message
    ticker.ticks.clear()
    ticker.wait_for(lambda: ticker.latest(INFY))


def test_unknown_tokens_never_tick(sandbox, client):
    ticker = connected(client())
    ticker.call("subscribe", [INFY, 1, 2**40])
    ticker.wait_for(lambda: ticker.latest(INFY))
    time.sleep(TICK_SECONDS * 2)
    assert {tick["instrument_token"] for tick in ticker.ticks} == {INFY}
    assert not ticker.errors


def test_more_than_kites_limit_of_instruments_on_one_connection_is_refused(sandbox, client):
    listed = sorted(token for token in sandbox.state.market._by_token if token < 2**32)
    unknown = [token for token in range(1, 4000) if token not in set(listed)]
    tokens = (listed + unknown)[: MAX_TOKENS_PER_CONNECTION + 1]
    ticker = connected(client())
    ticker.call("subscribe", tokens)
    code, message = ticker.wait_for(lambda: ticker.errors and ticker.errors[0])
    assert code == 0 and "3000" in message
    assert subscriptions(sandbox)[0]["modes"] == {}

    ticker.call("subscribe", tokens[:MAX_TOKENS_PER_CONNECTION])
    ticker.wait_for(lambda: len(subscriptions(sandbox)[0]["modes"]) == MAX_TOKENS_PER_CONNECTION)
    ticker.wait_for(lambda: {tick["instrument_token"] for tick in ticker.ticks} == set(listed))
    ticker.errors.clear()
    ticker.call("subscribe", [tokens[-1]])
    assert ticker.wait_for(lambda: ticker.errors and ticker.errors[0])[0] == 0


def test_a_message_far_over_any_subscribe_closes_the_connection(sandbox, client):
    ticker = connected(client())
    ticker.call("stop_retry")
    blocking_send(ticker, b" " * (1024 * 1024))
    code, _ = ticker.wait_for(lambda: ticker.closes and ticker.closes[0])
    assert code == 1009


def test_a_fourth_connection_for_one_api_key_is_refused(sandbox, client):
    for _ in range(3):
        connected(client())
    fourth = client()
    _, reason = fourth.wait_for(lambda: fourth.errors and fourth.errors[0])
    assert "429" in str(reason)


def test_upgrades_admitted_but_not_yet_open_count_against_the_limit(sandbox, kite):
    """The 101 goes out before the connection joins the open ones: a client that heard it may ask again in
    between (a busy machine let a fourth connection in so), and must find the place taken."""
    hub = sandbox.server.ticker
    headers = Message()
    headers["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    headers["Sec-WebSocket-Version"] = "13"
    query = {"api_key": [API_KEY], "access_token": [kite.access_token]}
    admitted = [hub.admit(headers, query) for _ in range(MAX_CONNECTIONS_PER_API_KEY)]
    assert all(isinstance(admission, Admission) for admission in admitted)
    assert hub.admit(headers, query).status == 429

    def client_gone():
        raise OSError("the client hung up before the upgrade")

    # An upgrade that fails gives its place back.
    for admission in admitted:
        with pytest.raises(OSError):
            hub.run(client_gone, admission)
    again = hub.admit(headers, query)
    assert isinstance(again, Admission)
    with pytest.raises(OSError):
        hub.run(client_gone, again)


def test_after_a_drop_the_ticker_reconnects_and_its_subscriptions_tick_again(sandbox, client):
    ticker = connected(client())
    ticker.call("subscribe", [INFY])
    ticker.call("set_mode", ticker.ticker.MODE_FULL, [INFY])
    ticker.wait_for(lambda: ticker.latest(INFY))

    dropped = requests.post(f"{sandbox.url}/_sandbox/ticker/drop", timeout=5).json()
    assert dropped == {"dropped": 1}
    ticker.wait_for(lambda: ticker.errors)  # an unclean close, as a network failure is
    ticker.wait_for(lambda: ticker.connects == 2, timeout=15)
    ticker.ticks.clear()
    assert ticker.wait_for(lambda: ticker.latest(INFY), timeout=15)["mode"] == "full"
    assert subscriptions(sandbox)[0]["modes"] == {str(INFY): "full"}


def test_when_the_session_ends_the_stream_closes_and_the_token_is_refused_from_then_on(sandbox, kite, client):
    ticker = connected(client())
    ticker.call("subscribe", [INFY])
    ticker.wait_for(lambda: ticker.latest(INFY))

    sandbox.state.kite.expire_sessions()  # the 06:00 IST reset
    code, reason = ticker.wait_for(lambda: ticker.closes and ticker.closes[0])
    assert (code, reason) == (1008, "Token is invalid or has expired.")
    _, refusal = ticker.wait_for(lambda: ticker.errors and ticker.errors[-1], timeout=15)  # KiteTicker retries
    assert "403 - Forbidden" in str(refusal)
    assert subscriptions(sandbox) == []


def test_the_sent_log_is_off_unless_asked_and_gives_each_packet_as_the_client_decodes_it(sandbox, client):
    log = f"{sandbox.url}/_sandbox/ticker/sent"
    assert requests.get(log, timeout=5).status_code == 409
    for bad in ({"capacity": 0}, {"capacity": "9"}, {"capacity": True}, [], {"capacity": 10**9}):
        assert requests.post(log, json=bad, timeout=5).status_code == 400
    assert requests.post(log, json={"capacity": 4}, timeout=5).status_code == 201
    try:
        before = time.time()
        ticker = connected(client())
        ticker.call("subscribe", [INFY, RELIANCE])
        ticker.wait_for(lambda: sum(tick["instrument_token"] == INFY for tick in ticker.ticks) >= 3)
        page = requests.get(log, timeout=5).json()
        after = time.time()

        # Only the last four packets are kept; the ones before are counted as lost.
        assert len(page["ticks"]) == 4 and page["lost"] >= 2
        assert [entry[0] for entry in page["ticks"]] == list(range(page["lost"] + 1, page["lost"] + 5))
        connection_id = subscriptions(sandbox)[0]["id"]
        assert page["connections"] == {connection_id: "AB1234"}
        for _seq, on, token, price, sent_at in page["ticks"]:
            assert on == connection_id
            assert price == ticker.latest(token)["last_price"]  # the clock is frozen: one price a token
            assert before <= sent_at <= after
        newer = requests.get(log, params={"after": page["next"], "limit": 1}, timeout=5).json()
        assert all(entry[0] > page["next"] for entry in newer["ticks"]) and len(newer["ticks"]) <= 1
        assert requests.get(log, params={"after": "-1"}, timeout=5).status_code == 400
    finally:
        assert requests.delete(log, timeout=5).status_code == 200
    assert requests.get(log, timeout=5).status_code == 409


@pytest.mark.parametrize("seconds", ["0", "-1", "nan"])
def test_run_broker_sandbox_refuses_a_ticker_period_that_is_not_above_zero(seconds):
    with pytest.raises(CommandError, match="--ticker-seconds"):
        call_command("run_broker_sandbox", "--port", "0", "--ticker-seconds", seconds)


def blocking_send(ticker: TickerClient, payload: bytes) -> None:
    from twisted.internet import reactor
    from twisted.internet.threads import blockingCallFromThread

    blockingCallFromThread(reactor, ticker.ticker.ws.sendMessage, payload)
