"""The Schwab stream against the broker sandbox's streamer over a real WebSocket (nothing mocked): watched US
symbols stream into the last-prices hash and the servers' tick hub at the REST quote's prices, and the
stream comes back by itself after a drop (logged in with the connection's current token, resubscribed), heals
a refused token with one refresh, waits when the connection is dead, and shrugs off hostile frames."""

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from asgiref.sync import async_to_sync
from django.utils import timezone
from websockets.sync.client import connect

from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.sandbox.testing import start_sandbox
from brokers.services.tokens import connection_tokens_refresh
from brokers.tests.schwab_sandbox_calls import CALLBACK, CLIENT_ID, CLIENT_SECRET, api, pin, tokens_for
from brokers.tests.test_sandbox_kite_ticker import FrozenClock
from market.schwab_runner import SchwabStreamRunner, schwab_market_data_session, streamer_info
from market.schwab_stream import SchwabStream, StreamRefused
from market.selectors import last_prices
from market.services import ticks_unwatch, ticks_watch
from market.tests.stream_steps import (
    WAIT_SECONDS,
    eventually,
    first_tick_heard,
    runners_in_threads,
)
from market.tests.test_tickhub import Heard
from market.tickhub import tick_hub
from market.us_tokens import us_token

pytestmark = pytest.mark.usefixtures("ticks_flushed")

AAPL, MSFT = us_token("AAPL"), us_token("MSFT")
INFY = 408065  # a Kite token: the Schwab stream leaves it to Kite's


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture
def sandbox(settings, clock):
    app = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": CALLBACK}
    with start_sandbox(schwab_apps=[app], tick_seconds=None, ticker_seconds=0.05, clock=clock) as handle:
        settings.THOR_SCHWAB_API_BASE = handle.url
        settings.THOR_SCHWAB_AUTH_BASE = handle.url
        settings.THOR_SCHWAB_RATE_WAIT = 0.0
        yield handle


@pytest.fixture
def tokens(sandbox) -> dict:
    return tokens_for(sandbox)


@pytest.fixture
def schwab_connection(tenant, alice, tokens):
    """The tenant's shared Schwab app, with an active session at the sandbox's Schwab (Alice linked it)."""
    app = BrokerApp.objects.create(
        tenant=tenant, kind=BrokerKind.SCHWAB, api_key=CLIENT_ID, api_secret=CLIENT_SECRET, redirect_uri=CALLBACK
    )
    now = timezone.now()
    return BrokerConnection.objects.create(
        user=alice,
        app=app,
        status=BrokerConnection.Status.ACTIVE,
        broker_user_id="customer",
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        access_expires_at=now + timedelta(minutes=30),
        refresh_expires_at=now + timedelta(days=7),
    )


@pytest.fixture
def start_runner():
    """The runner in a thread, as `run_market_stream` runs it beside the Kite stream."""
    with runners_in_threads(
        lambda: SchwabStreamRunner(sync_seconds=0.05, session_check_seconds=0.2, reconnect_seconds=0.05),
        name="schwab-stream",
    ) as start:
        yield start


def streamer(sandbox) -> dict:
    return requests.get(f"{sandbox.url}/_sandbox/schwab/streamer", timeout=5).json()


def subscribed(sandbox) -> list[list[str]]:
    return [connection["symbols"] for connection in streamer(sandbox)["connections"]]


def quoted(sandbox, access_token, *symbols) -> dict[int, Decimal]:
    answer = api(sandbox, "GET", "/marketdata/v1/quotes", access_token, params={"symbols": ",".join(symbols)}).json()
    return {us_token(symbol): Decimal(str(answer[symbol]["quote"]["lastPrice"])) for symbol in symbols}


def streamed(*tokens) -> dict[int, Decimal]:
    return {token: price.last_price for token, price in last_prices(tokens).items()}


@pytest.mark.django_db(transaction=True)
def test_watched_us_symbols_stream_into_last_prices_and_the_tick_hub_at_the_quotes_prices(
    sandbox, tokens, schwab_connection, start_runner
):
    assert schwab_market_data_session() == schwab_market_data_session(tenant_slug=schwab_connection.app.tenant.slug)
    runner = start_runner()

    token, price, _ = first_tick_heard(AAPL, watch=[AAPL, INFY])
    expected = quoted(sandbox, tokens["access_token"], "AAPL")[AAPL]
    assert (token, price) == (AAPL, expected)
    assert streamed(AAPL) == {AAPL: expected}
    assert subscribed(sandbox) == [["AAPL"]]  # INFY is Kite's

    ticks_watch([MSFT])  # added while streaming: ADD, no reconnect
    eventually(lambda: streamed(AAPL, MSFT) == quoted(sandbox, tokens["access_token"], "AAPL", "MSFT"))
    pin(sandbox, AAPL=222.22)
    eventually(lambda: streamed(AAPL)[AAPL] == Decimal("222.22"))
    ticks_unwatch([AAPL])
    eventually(lambda: subscribed(sandbox) == [["MSFT"]])
    assert runner.logins == 1


@pytest.mark.django_db(transaction=True)
def test_after_a_token_refresh_and_a_drop_the_stream_logs_in_with_the_new_token_and_resubscribes(
    sandbox, schwab_connection, start_runner
):
    runner = start_runner()
    ticks_watch([AAPL])
    eventually(lambda: streamed(AAPL))
    old_token = schwab_connection.access_token

    assert connection_tokens_refresh(connection_id=schwab_connection.pk, force=True).action == "refreshed"
    schwab_connection.refresh_from_db()
    assert schwab_connection.access_token != old_token  # the old one is dead at the sandbox now
    assert requests.post(f"{sandbox.url}/_sandbox/schwab/streamer/drop", timeout=5).json() == {"dropped": 1}
    ticks_watch([MSFT])  # watched while it was away

    eventually(lambda: runner.logins == 2)
    eventually(lambda: subscribed(sandbox) == [["AAPL", "MSFT"]])
    pin(sandbox, AAPL=190.5, MSFT=410.25)
    eventually(lambda: streamed(AAPL, MSFT) == {AAPL: Decimal("190.5"), MSFT: Decimal("410.25")})
    assert streamer(sandbox)["logins_denied"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_refused_token_is_refreshed_once_and_a_dead_connection_is_left_alone(
    sandbox, schwab_connection, start_runner
):
    schwab_connection.access_token = "I0.revoked@"
    schwab_connection.save()
    runner = start_runner()
    ticks_watch([AAPL])
    eventually(lambda: streamed(AAPL))  # refused, refreshed, streaming
    assert runner.logins == 1
    assert requests.get(f"{sandbox.url}/_sandbox/schwab/refreshes", timeout=5).json()["total"] == 1

    # A token nobody can refresh: the connection expires and the stream waits for another.
    schwab_connection.refresh_from_db()
    schwab_connection.access_token, schwab_connection.refresh_token = "I0.revoked@", "no-such-refresh-token"
    schwab_connection.save()
    assert requests.post(f"{sandbox.url}/_sandbox/schwab/streamer/drop", timeout=5).json() == {"dropped": 1}
    eventually(lambda: BrokerConnection.objects.get(pk=schwab_connection.pk).status == "expired")
    eventually(lambda: schwab_market_data_session() is None)
    assert streamer(sandbox)["connections"] == [] and runner.logins == 1


@pytest.mark.django_db
def test_the_streamer_denies_a_bad_token_with_code_3(sandbox, schwab_connection):
    info = streamer_info(schwab_market_data_session())
    with connect(info["streamerSocketUrl"], open_timeout=5) as socket, pytest.raises(StreamRefused) as refused:
        SchwabStream(socket, info).login("I0.not-a-token@", timeout=5)
    assert refused.value.code == 3
    assert streamer(sandbox)["logins_denied"] == 1


HOSTILE_FRAMES = [
    "not json",
    "[1, 2]",
    '{"data": "nonsense", "response": 7, "notify": {"x": 1}}',
    '{"data": [{"service": "LEVELONE_EQUITIES", "content": [{"key": "AAPL", "3": -5}, {"key": "AAPL", "3": "1e9"},'
    ' {"key": "AAPL", "3": NaN}, {"key": "AAPL", "3": 1e400}, {"key": "AAPL", "3": true}, {"key": 7, "3": 5},'
    ' {"key": "NOPE", "3": 5}, "AAPL", null]}, 7, {"service": "LEVELONE_EQUITIES", "content": 5}]}',
    '{"response": [{"service": "LEVELONE_EQUITIES", "requestid": "999", "content": "x"}, 5]}',
    '{"notify": [{"heartbeat": null}, {"content": {"code": "12"}}]}',
    "\u0000" * 64,
]


@pytest.mark.django_db(transaction=True)
def test_hostile_frames_are_skipped_and_the_stream_keeps_streaming(sandbox, schwab_connection, start_runner):
    runner = start_runner()
    ticks_watch([AAPL])
    first = eventually(lambda: streamed(AAPL))[AAPL]

    def send_hostile_frames_then_move_the_price() -> None:
        for frame in HOSTILE_FRAMES:
            answer = requests.post(f"{sandbox.url}/_sandbox/schwab/streamer/send", json={"text": frame}, timeout=5)
            assert answer.json() == {"sent": 1}
        pin(sandbox, AAPL=201.75)  # its data frame comes after every hostile one

    async def prices_heard() -> list[Decimal]:
        hub = tick_hub()
        listener = Heard()
        hub.listen(listener, [AAPL])
        assert await hub.ready()
        await asyncio.to_thread(send_hostile_frames_then_move_the_price)
        heard: list[Decimal] = []
        try:
            while not heard or heard[-1] != Decimal("201.75"):
                heard.extend(price for _, price, _ in await listener.next_batch(WAIT_SECONDS))
        finally:
            hub.forget(listener)
            await hub.stop()
        return heard

    assert set(async_to_sync(prices_heard)()) <= {first, Decimal("201.75")}
    assert streamed(AAPL) == {AAPL: Decimal("201.75")}
    assert runner.logins == 1
    assert streamed(us_token("NOPE")) == {}
