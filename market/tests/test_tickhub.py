"""The tick hub (market.tickhub): one published batch reaches every process's sockets once; a socket that
goes is forgotten; a lost subscription comes back by itself, said once each way."""

import asyncio
import gc
import json
import logging
import threading
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings

from market import caches, tickhub
from market.tickhub import Tick, TickHub, batch_decode, batch_encode, tick_hub, ticks_deliver, ticks_publish
from thor.coordination import OccasionalWarning, redis_client, uses_redis

INFY, SBIN, TCS = 408065, 779521, 2953217
WAIT_SECONDS = 5

pytestmark = pytest.mark.skipif(not uses_redis(), reason="the Redis transport (make test runs on Redis)")


class Heard:
    """A socket as the hub sees it: a listener that keeps what it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[Tick]] = []
        self.arrived = asyncio.Event()

    def ticks_heard(self, ticks: list[Tick]) -> None:
        self.batches.append(ticks)
        self.arrived.set()

    async def next_batch(self, wait: float = WAIT_SECONDS) -> list[Tick]:
        async with asyncio.timeout(wait):
            await self.arrived.wait()
        self.arrived.clear()
        return self.batches[-1]

    def prices(self) -> dict[int, Decimal]:
        return {token: price for batch in self.batches for token, price, _ in batch}


class Process:
    """A server process's loop: its own thread, its own hub (as uvicorn's workers each have), whose pauses
    between reconnects last until the test lets them end (`resume`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pauses = 0
        self.hub = self.run(self._hub())

    async def _hub(self) -> TickHub:
        self.gate = asyncio.Event()
        return TickHub(
            asyncio.get_running_loop(), redis_url=settings.CACHES["default"].get("LOCATION"), pause=self._pause
        )

    async def _pause(self, _seconds: float) -> None:
        self.pauses += 1
        await self.gate.wait()
        self.gate.clear()

    def paused(self, times: int) -> None:
        self.run(_until(lambda: self.pauses == times))

    def resume(self) -> None:
        self.loop.call_soon_threadsafe(self.gate.set)

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(WAIT_SECONDS + 1)

    def close(self) -> None:
        self.run(self.hub.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_SECONDS)
        self.loop.close()


@pytest.fixture
def processes():
    started: list[Process] = []
    yield lambda: started.append(Process()) or started[-1]
    for process in started:
        process.close()


async def listening(hub: TickHub, tokens) -> Heard:
    heard = Heard()
    hub.listen(heard, tokens)
    assert await hub.ready()
    return heard


def test_one_published_batch_reaches_the_sockets_of_two_processes_exactly_once_each(processes):
    first, second = processes(), processes()
    a = first.run(listening(first.hub, [INFY, SBIN]))
    b = first.run(listening(first.hub, [TCS]))
    c = second.run(listening(second.hub, [INFY]))

    ticks_publish({INFY: "1510.55", SBIN: "790", TCS: "3901.05"}, received_at=1000.0)
    assert first.run(a.next_batch()) == [(INFY, Decimal("1510.55"), 1000.0), (SBIN, Decimal("790"), 1000.0)]
    assert first.run(b.next_batch()) == [(TCS, Decimal("3901.05"), 1000.0)]
    assert second.run(c.next_batch()) == [(INFY, Decimal("1510.55"), 1000.0)]

    ticks_publish({SBIN: "791"}, received_at=1001.0)  # a marker: everything before it has arrived
    assert first.run(a.next_batch()) == [(SBIN, Decimal("791"), 1001.0)]
    assert (len(a.batches), len(b.batches), len(c.batches)) == (2, 1, 1)


def test_a_streams_batch_is_stored_as_the_last_prices_and_reaches_the_sockets(processes):
    process = processes()
    heard = process.run(listening(process.hub, [INFY]))

    ticks_deliver({INFY: "1510.55", SBIN: "790"}, received_at=1000.25)

    assert process.run(heard.next_batch()) == [(INFY, Decimal("1510.55"), 1000.25)]
    assert caches.last_prices_read([INFY, SBIN, TCS]) == {
        INFY: {"last_price": "1510.55", "received_at": 1000.25},
        SBIN: {"last_price": "790", "received_at": 1000.25},
    }


def test_a_tick_at_no_price_is_neither_stored_nor_heard_and_the_last_price_stands(processes):
    # Kite ticks a contract that has not traded at 0; a negative or non-numeric price is no better.
    process = processes()
    heard = process.run(listening(process.hub, [INFY, SBIN, TCS]))
    ticks_deliver({INFY: "1510.55"}, received_at=1000.0)
    assert process.run(heard.next_batch()) == [(INFY, Decimal("1510.55"), 1000.0)]

    ticks_deliver({INFY: "0", SBIN: "-790", TCS: "NaN"}, received_at=1001.0)
    ticks_deliver({TCS: "0.0"}, received_at=1001.5)
    ticks_deliver({SBIN: "790"}, received_at=1002.0)  # a marker: everything before it has arrived

    assert process.run(heard.next_batch()) == [(SBIN, Decimal("790"), 1002.0)]
    assert caches.last_prices_read([INFY, SBIN, TCS]) == {
        INFY: {"last_price": "1510.55", "received_at": 1000.0},
        SBIN: {"last_price": "790", "received_at": 1002.0},
    }


def test_a_stream_goes_on_while_redis_is_down_and_says_so_once(caplog, settings, monkeypatch):
    monkeypatch.setattr(tickhub, "_publish_down", OccasionalWarning(tickhub.logger))
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0", "OPTIONS": {}}}
    caplog.set_level(logging.WARNING, logger="market.tickhub")
    for received_at in (1000.0, 1001.0):
        ticks_deliver({INFY: "1510.55"}, received_at=received_at)  # never raises
    messages = [record.getMessage() for record in caplog.records if record.name == "market.tickhub"]
    assert messages == ["Could not store and publish ticks: ConnectionError"]


@pytest.mark.parametrize("price", ["1510.55", "0.05", "1E+3", "-2.5", 'a"quote\\'])
def test_the_stored_entry_is_json_whatever_the_price_text(price):
    fields = caches.last_prices_fields({INFY: price}, received_at=1765000000.125)
    assert json.loads(fields[str(INFY)]) == {"last_price": price, "received_at": 1765000000.125}


def test_a_socket_that_goes_is_forgotten(processes):
    process = processes()
    staying = process.run(listening(process.hub, [INFY]))
    going = process.run(listening(process.hub, [INFY, SBIN]))
    assert process.hub.registered() == {INFY: 2, SBIN: 1}

    process.hub.listen(going, [SBIN])  # it stopped watching INFY
    assert process.hub.registered() == {INFY: 1, SBIN: 1}
    process.hub.forget(going)
    assert process.hub.registered() == {INFY: 1}
    # One that vanished without a word (its consumer collected) is not kept alive by the hub either.
    vanishing = process.run(listening(process.hub, [TCS]))
    del vanishing
    gc.collect()
    assert process.hub.registered() == {INFY: 1}
    assert staying.batches == []


def test_a_lost_subscription_reconnects_says_so_once_and_catches_up(processes, caplog):
    process = processes()
    heard = process.run(listening(process.hub, [INFY]))
    ticks_publish({INFY: "1500.05"}, received_at=1000.0)
    process.run(heard.next_batch())
    caplog.set_level(logging.WARNING, logger="market.tickhub")

    store = redis_client()
    connection = next(client for client in store.client_list() if client["name"] == process.hub.name)
    store.client_kill_filter(_id=connection["id"])
    process.paused(1)
    # Redis still away (nothing listens on port 1) for two more tries: still one warning for the outage.
    url = process.hub.redis_url
    process.hub.redis_url = url.replace(url.split("/")[2], "127.0.0.1:1")
    process.resume()
    process.paused(2)
    process.resume()
    process.paused(3)
    assert heard.prices() == {INFY: Decimal("1500.05")}  # the socket keeps its last price meanwhile

    # The stream went on: what it stored meanwhile is handed over once the subscription is back.
    caches.last_prices_write({INFY: "1500.10"}, received_at=1002.0)
    process.hub.redis_url = url
    process.resume()
    assert process.run(heard.next_batch()) == [(INFY, Decimal("1500.10"), 1002.0)]
    messages = [record.getMessage() for record in caplog.records if record.name == "market.tickhub"]
    assert messages == [
        "Lost the ticks' subscription (ConnectionError); reconnecting",
        "The ticks' subscription is back",
    ]
    ticks_publish({INFY: "1500.15"}, received_at=1003.0)
    assert process.run(heard.next_batch()) == [(INFY, Decimal("1500.15"), 1003.0)]
    assert process.pauses == 3


async def _until(condition) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while not condition():
            await asyncio.sleep(0.01)


def test_the_embedded_mode_feeds_the_hubs_of_this_process_directly(processes, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    process = processes()

    async def embedded_listener() -> Heard:
        hub = tick_hub()  # this loop's, without Redis
        assert hub.redis_url is None
        return await listening(hub, [INFY])

    heard = process.run(embedded_listener())
    ticks_publish({INFY: "1499.95", SBIN: "800"}, received_at=1000.0)  # from this (the stream's) thread
    assert process.run(heard.next_batch()) == [(INFY, Decimal("1499.95"), 1000.0)]


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"at": "x", "ticks": []}',
        b'{"at": 1, "ticks": {"408065": "1"}}',
        b'{"at": 1, "ticks": [[408065]]}',
        b'{"at": 1, "ticks": [[true, "1"], ["408065", "1"], [408065, 1500], [408065, "NaN"], [408065, "x"]]}',
        b'{"at": 1, "ticks": [[408065, "Infinity"], null, 7]}',
    ],
)
def test_a_hostile_message_on_the_channel_is_skipped(data):
    assert batch_decode(data) == []


def test_a_batch_reads_back_as_it_was_published():
    assert batch_decode(batch_encode({INFY: "1500.05", SBIN: "0.05"}, 12.5)) == [
        (INFY, Decimal("1500.05"), 12.5),
        (SBIN, Decimal("0.05"), 12.5),
    ]
