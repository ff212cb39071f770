"""The market app's caches: instruments by (exchange, tradingsymbol), in each process.

Every order's pre-trade checks read its instrument; the master changes once a day. A process keeps what it
read for INSTRUMENT_SECONDS (an unknown symbol too), so a day's load reaches every process within that,
and at once in the process that loaded it.
"""

import threading
import time

INSTRUMENT_SECONDS = 60.0

_instruments: dict[tuple[str, str], tuple[float, object]] = {}
_lock = threading.Lock()
_MISSING = object()


def instrument_cached(key: tuple[str, str]):
    """The cached value (possibly None: not listed), or `MISSING` when not cached or stale."""
    entry = _instruments.get(key)
    if entry is None or entry[0] < time.monotonic():
        return _MISSING
    return entry[1]


def instrument_remember(key: tuple[str, str], value) -> None:
    with _lock:
        _instruments[key] = (time.monotonic() + INSTRUMENT_SECONDS, value)


def instruments_flush() -> None:
    with _lock:
        _instruments.clear()


MISSING = _MISSING
