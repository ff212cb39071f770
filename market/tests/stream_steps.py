"""What the market streams' tests share (Kite's in test_ticks, Schwab's in test_schwab_stream): a runner in a
thread as `run_market_stream` runs it, waiting for the stream, and the first tick the servers' tick hub hears."""

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

from asgiref.sync import async_to_sync
from django.db import connection as db_connection

from market.services import ticks_watch
from market.tests.test_tickhub import Heard
from market.tickhub import Tick, tick_hub

WAIT_SECONDS = 15

Result = TypeVar("Result")


class Runner(Protocol):
    def run(self, stop: threading.Event) -> None: ...


AnyRunner = TypeVar("AnyRunner", bound=Runner)


@contextlib.contextmanager
def runners_in_threads(make: Callable[[], AnyRunner], *, name: str) -> Iterator[Callable[[], AnyRunner]]:
    """A `start` that makes a runner and runs it in a thread of its own; on leaving, every runner started is
    stopped and its thread seen to end."""
    started = []

    def start() -> AnyRunner:
        runner = make()
        stop = threading.Event()

        def run():
            try:
                runner.run(stop)
            finally:
                db_connection.close()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        started.append((stop, thread))
        return runner

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()


def eventually(predicate: Callable[[], Result], timeout: float = WAIT_SECONDS, every: float = 0.05) -> Result:
    """The predicate's first truthy answer, asked every `every` seconds; the test fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)
    return result


def first_tick_heard(token: int, *, watch: list[int]) -> Tick:
    """Listen for `token` on the servers' tick hub, watch `watch`, and return the first tick heard."""

    async def first_tick() -> Tick:
        hub = tick_hub()
        heard = Heard()
        hub.listen(heard, [token])
        assert await hub.ready()
        ticks_watch(watch)
        try:
            (tick,) = await heard.next_batch(WAIT_SECONDS)
        finally:
            hub.forget(heard)
            await hub.stop()
        return tick

    return async_to_sync(first_tick)()
