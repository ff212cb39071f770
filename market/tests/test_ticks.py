"""The market stream against the broker sandbox's Kite ticker over a real WebSocket (the official KiteTicker,
nothing mocked): watched tokens stream into the last-prices hash and the servers' tick hub, at the
prices the REST quote gives, and the stream comes back by itself after a drop or a refused token."""

import time
from decimal import Decimal

import pytest
import requests

from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.sandbox.testing import start_sandbox
from brokers.tests.kite_sandbox_calls import API_KEY, API_SECRET, REDIRECT_URL, kite_session
from brokers.tests.test_sandbox_kite_ticker import FrozenClock
from market import caches
from market.selectors import last_prices
from market.services import ticks_unwatch, ticks_watch
from market.tests.stream_steps import (
    WAIT_SECONDS,
    eventually,
    first_tick_heard,
    runners_in_threads,
)
from market.ticks import MarketStreamRunner, market_data_session, ticker_root

pytestmark = pytest.mark.usefixtures("ticks_flushed")

INFY, RELIANCE = 408065, 738561
STREAM_WAIT_SECONDS = WAIT_SECONDS  # for the socket tests that stream (accounts/tests/test_position_prices.py)


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture
def sandbox(settings, clock):
    app = {"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": REDIRECT_URL}
    with start_sandbox(apps=[app], tick_seconds=None, ticker_seconds=0.1, clock=clock) as handle:
        settings.THOR_KITE_API_ROOT = handle.url
        settings.THOR_KITE_TICKER_ROOT = ""
        yield handle


@pytest.fixture
def kite(sandbox):
    return kite_session(sandbox)


@pytest.fixture
def market_data_connection(tenant, alice, kite):
    """The tenant's shared Kite app, with an active session at the sandbox's Kite (Alice linked it)."""
    app = BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.KITE, api_key=API_KEY, api_secret=API_SECRET)
    return BrokerConnection.objects.create(
        user=alice,
        app=app,
        status=BrokerConnection.Status.ACTIVE,
        broker_user_id="AB1234",
        access_token=kite.access_token,
    )


@pytest.fixture
def start_runner():
    """The runner in a thread, as `run_market_stream` runs it in its process."""
    with runners_in_threads(
        lambda: MarketStreamRunner(sync_seconds=0.05, session_check_seconds=0.2), name="market-stream"
    ) as start:
        yield start


@pytest.fixture
def running_stream(market_data_connection, start_runner):
    return start_runner()


def ticker_connections(sandbox) -> list[dict]:
    return requests.get(f"{sandbox.url}/_sandbox/ticker", timeout=5).json()


def upgrades_refused(sandbox) -> int:
    # Only the ticker's upgrades are counted as "refused".
    return requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["by_status"].get("refused", 0)


def quoted_prices(kite, tokens) -> dict[int, Decimal]:
    quotes = kite.quote([str(token) for token in tokens])
    return {token: Decimal(str(quotes[str(token)]["last_price"])) for token in tokens}


def streamed_prices(tokens) -> dict[int, Decimal]:
    return {token: price.last_price for token, price in last_prices(tokens).items()}


def test_the_ticker_root_is_the_sandboxs_ws_beside_its_api_in_development(sandbox, settings):
    assert ticker_root() == sandbox.url.replace("http://", "ws://") + "/ws"
    settings.THOR_KITE_TICKER_ROOT = "wss://ws.kite.trade"
    assert ticker_root() == "wss://ws.kite.trade"


def test_without_redis_the_watched_set_and_last_prices_are_the_processs_own(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ticks_watch([INFY, RELIANCE])
    ticks_unwatch([RELIANCE])
    assert caches.watched_tokens() == {INFY}
    caches.last_prices_write({INFY: "1501.25"})
    assert streamed_prices([INFY, RELIANCE]) == {INFY: Decimal("1501.25")}


@pytest.mark.django_db
def test_the_market_data_session_is_an_active_connection_of_a_shared_kite_app(tenant, alice):
    shared = BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.KITE, api_key="shared", api_secret="s")
    own = BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.KITE, api_key="own", api_secret="s", owner=alice)
    BrokerConnection.objects.create(
        user=alice, app=own, status=BrokerConnection.Status.ACTIVE, broker_user_id="A", access_token="own-token"
    )
    expired = BrokerConnection.objects.create(
        user=alice, app=shared, status=BrokerConnection.Status.EXPIRED, broker_user_id="B", access_token="old"
    )
    assert market_data_session() is None

    expired.status, expired.access_token = BrokerConnection.Status.ACTIVE, "fresh"
    expired.save()
    session = market_data_session()
    assert (session.api_key, session.access_token) == ("shared", "fresh")
    assert market_data_session(tenant_slug="no-such-tenant") is None


@pytest.mark.django_db(transaction=True)
def test_watched_tokens_stream_into_last_prices_at_the_rest_quotes_prices(sandbox, kite, clock, running_stream):
    ticks_watch([INFY])
    eventually(lambda: streamed_prices([INFY]) == quoted_prices(kite, [INFY]))

    ticks_watch([RELIANCE])  # added while streaming: picked up without a reconnect
    eventually(lambda: streamed_prices([INFY, RELIANCE]) == quoted_prices(kite, [INFY, RELIANCE]))
    assert ticker_connections(sandbox)[0]["modes"] == {str(INFY): "full", str(RELIANCE): "full"}
    assert running_stream.stream.connections == 1

    clock.advance(11)
    moved = quoted_prices(kite, [INFY, RELIANCE])
    eventually(lambda: streamed_prices([INFY, RELIANCE]) == moved)
    assert time.time() - last_prices([INFY])[INFY].received_at < 5

    ticks_unwatch([INFY])
    eventually(lambda: ticker_connections(sandbox)[0]["modes"] == {str(RELIANCE): "full"})


@pytest.mark.django_db(transaction=True)
def test_after_the_sandbox_drops_the_connection_the_stream_resubscribes(sandbox, kite, clock, running_stream):
    ticks_watch([INFY, RELIANCE])
    eventually(lambda: len(streamed_prices([INFY, RELIANCE])) == 2)

    assert requests.post(f"{sandbox.url}/_sandbox/ticker/drop", timeout=5).json() == {"dropped": 1}
    ticks_watch([NIFTY_50 := 256265])  # watched while it was away
    eventually(lambda: running_stream.stream.connections == 2)
    expected = {str(INFY): "full", str(RELIANCE): "full", str(NIFTY_50): "full"}
    eventually(lambda: [connection["modes"] for connection in ticker_connections(sandbox)] == [expected])

    clock.advance(13)
    moved = quoted_prices(kite, [INFY, RELIANCE, NIFTY_50])
    eventually(lambda: streamed_prices([INFY, RELIANCE, NIFTY_50]) == moved)


@pytest.mark.django_db(transaction=True)
def test_a_refused_token_is_replaced_by_the_connections_new_one_without_a_restart(
    sandbox, kite, market_data_connection, running_stream
):
    ticks_watch([INFY])
    eventually(lambda: streamed_prices([INFY]))
    kite.invalidate_access_token()  # a logout elsewhere, or the 06:00 reset: the sandbox closes the stream
    first_stream = running_stream.stream
    eventually(lambda: first_stream.refused.is_set())
    assert ticker_connections(sandbox) == []
    refused_upgrades = upgrades_refused(sandbox)
    time.sleep(1.5)  # the refused token is tried again after 0.4 s, then 0.8 s: twice, not every check
    assert upgrades_refused(sandbox) - refused_upgrades <= 2

    market_data_connection.access_token = kite_session(sandbox).access_token
    market_data_connection.save()
    eventually(lambda: [connection["modes"] for connection in ticker_connections(sandbox)] == [{str(INFY): "full"}])
    assert running_stream.stream is not first_stream


@pytest.mark.django_db(transaction=True)
def test_a_stream_started_before_any_session_exists_starts_streaming_when_one_does(
    sandbox, kite, tenant, alice, start_runner
):
    runner = start_runner()
    ticks_watch([INFY])
    time.sleep(0.5)
    assert runner.stream is None and ticker_connections(sandbox) == []

    app = BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.KITE, api_key=API_KEY, api_secret=API_SECRET)
    BrokerConnection.objects.create(
        user=alice,
        app=app,
        status=BrokerConnection.Status.ACTIVE,
        broker_user_id="AB1234",
        access_token=kite.access_token,
    )
    eventually(lambda: streamed_prices([INFY]) == quoted_prices(kite, [INFY]))


@pytest.mark.django_db(transaction=True)
def test_each_batch_of_ticks_reaches_the_servers_tick_hub(sandbox, kite, running_stream):
    token, price, _ = first_tick_heard(INFY, watch=[INFY])
    assert (token, price) == (INFY, quoted_prices(kite, [INFY])[INFY])


@pytest.mark.parametrize("redis", [True, False], ids=["redis", "embedded"])
def test_a_watch_is_a_lease_that_lapses_unless_renewed(redis, settings, time_passes):
    if not redis:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ticks_watch([INFY], seconds=30)
    ticks_watch([RELIANCE], seconds=90)
    ticks_watch([INFY], seconds=10)  # a shorter lease never cuts a longer one
    time_passes(20)
    assert caches.watched_tokens() == {INFY, RELIANCE}
    time_passes(15)
    assert caches.watched_tokens() == {RELIANCE}
    ticks_watch([INFY], seconds=90)  # a renewal
    time_passes(60)
    assert caches.watched_tokens() == {INFY}
