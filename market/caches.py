"""The market app's caches: instruments by (exchange, tradingsymbol), in each process; ticks, in Redis.

Every order's pre-trade checks read its instrument; the master changes once a day. A process keeps what it
read for INSTRUMENT_SECONDS (an unknown symbol too), so a day's load reaches every process within that,
and at once in the process that loaded it.
"""

import json
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


# --- ticks: in Redis, shared by every process ----------------------------------------------------
# The instrument tokens the market stream keeps subscribed (a set that other code adds to), and the last
# price of each token the stream heard (a hash: token -> {"last_price", "received_at"}).
WATCHED_TOKENS_KEY = "thor:market:ticks:watched"
LAST_PRICES_KEY = "thor:market:ticks:last"


def _redis():
    from thor.coordination import redis_client

    return redis_client()


def watched_tokens_add(tokens) -> int:
    tokens = [int(token) for token in tokens]
    return _redis().sadd(WATCHED_TOKENS_KEY, *tokens) if tokens else 0


def watched_tokens_remove(tokens) -> int:
    tokens = [int(token) for token in tokens]
    return _redis().srem(WATCHED_TOKENS_KEY, *tokens) if tokens else 0


def watched_tokens() -> set[int]:
    return {int(token) for token in _redis().smembers(WATCHED_TOKENS_KEY)}


def last_prices_write(prices: dict[int, str]) -> None:
    """Each token's last price (a decimal string), stamped with when the stream heard it."""
    if not prices:
        return
    received_at = time.time()
    _redis().hset(
        LAST_PRICES_KEY,
        mapping={
            str(token): json.dumps({"last_price": price, "received_at": received_at}) for token, price in prices.items()
        },
    )


def last_prices_read(tokens) -> dict[int, dict]:
    tokens = [int(token) for token in tokens]
    if not tokens:
        return {}
    values = _redis().hmget(LAST_PRICES_KEY, [str(token) for token in tokens])
    return {token: json.loads(value) for token, value in zip(tokens, values, strict=True) if value is not None}
