"""The official `KiteTicker` driven from a test thread: what it received, and calls made on its reactor.

Twisted's reactor is one per process and cannot be restarted, so the first ticker starts it in a thread
(`connect(threaded=True)`) and every later one connects from inside it.
"""

import threading
import time

from kiteconnect import KiteTicker
from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread


def ticker_root(sandbox_url: str) -> str:
    return sandbox_url.replace("http://", "ws://", 1) + "/ws"


class TickerClient:
    def __init__(self, sandbox_url: str, api_key: str, access_token: str):
        self.ticker = KiteTicker(api_key, access_token, root=ticker_root(sandbox_url), reconnect_max_delay=5)
        self.ticks: list[dict] = []
        self.errors: list[tuple[int, object]] = []
        self.closes: list[tuple[int, object]] = []
        self.connects = 0
        self._changed = threading.Condition()
        self.ticker.on_ticks = self._on_ticks
        self.ticker.on_error = lambda _, code, reason: self._record(self.errors, (code, reason))
        self.ticker.on_close = lambda _, code, reason: self._record(self.closes, (code, reason))
        self.ticker.on_connect = self._on_connect

    def connect(self) -> "TickerClient":
        if reactor.running:
            reactor.callFromThread(self.ticker.connect)
        else:
            self.ticker.connect(threaded=True)
        return self

    def call(self, method: str, *args):
        """A KiteTicker method, run on the reactor's thread (twisted is not thread-safe)."""
        return blockingCallFromThread(reactor, getattr(self.ticker, method), *args)

    def close(self) -> None:
        if self.ticker.ws is not None:
            self.call("close")
        else:
            reactor.callFromThread(self.ticker.stop_retry)

    def wait_for(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out waiting for the ticker")
                self._changed.wait(remaining)
        return result

    def latest(self, token: int) -> dict | None:
        with self._changed:
            return next((tick for tick in reversed(self.ticks) if tick["instrument_token"] == token), None)

    def _on_connect(self, _ticker, _response) -> None:
        with self._changed:
            self.connects += 1
            self._changed.notify_all()

    def _on_ticks(self, _ticker, ticks: list[dict]) -> None:
        with self._changed:
            self.ticks.extend(ticks)
            self._changed.notify_all()

    def _record(self, target: list, item) -> None:
        with self._changed:
            target.append(item)
            self._changed.notify_all()
