"""The market app's caches: instruments by (exchange, tradingsymbol), in each process; US symbol lookups and
ticks, in Redis.

Every order's pre-trade checks read its instrument; the master changes once a day. A process keeps what it
read for INSTRUMENT_SECONDS (an unknown symbol too), so a day's load reaches every process within that,
and at once in the process that loaded it.
"""

import json
import threading
import time
from urllib.parse import urlsplit

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


# --- US symbols looked up at Schwab (market.instrument_search): in the default cache, every process's ----
# What Schwab said it does not list (or lists as nothing Thor trades), per symbol, for
# THOR_MARKET_UNKNOWN_SYMBOL_SECONDS: a bad symbol asks Schwab once in that time, not on every order. The lock
# one process holds while it looks a symbol up (the others wait and read what it stored). A lookup that
# failed (Schwab down, the search budget spent) keeps the connection's lookups off Schwab for a moment.
# Symbols are checked (upper-case letters, digits, one class suffix) before any key is built from one.


def us_symbol_refused_key(symbol: str) -> str:
    return f"thor:market:us-symbol:{symbol}:refused"


def us_symbol_lock_key(symbol: str) -> str:
    return f"thor:market:us-symbol:{symbol}:lock"


def us_lookup_failed_key(connection_id: int) -> str:
    return f"thor:market:us-lookup:{connection_id}:failed"


# --- ticks: in Redis, shared by every process ----------------------------------------------------
# The instrument tokens the market stream keeps subscribed (a sorted set: token -> until when it is wanted,
# epoch seconds; each watcher renews its tokens, and a token nobody renews lapses by itself, as no watcher
# knows whether another, in another process, wants it too), and the last price of each token the stream
# heard (a hash: token -> {"last_price", "received_at"}). Without Redis (the embedded mode: one process)
# they live in this process, for a stream running in a thread beside the server.
WATCHED_TOKENS_KEY = "thor:market:ticks:wanted"
LAST_PRICES_KEY = "thor:market:ticks:last"

# The channel every server process subscribes to once (market.tickhub): each batch of ticks the stream hears,
# published as one message. Redis's pub/sub ignores the DB a client selected (a channel is seen from every
# DB), so the name carries the DB: two deployments (or two test runs) on one Redis do not hear each other.
TICKS_CHANNEL_KEY = "thor:market:ticks:published"


def ticks_channel_key(redis_url: str) -> str:
    db = urlsplit(redis_url).path.strip("/") or "0"
    return f"{TICKS_CHANNEL_KEY}:{db}"


_local_watched: dict[int, float] = {}
_local_last_prices: dict[int, dict] = {}


def _redis():
    from thor.coordination import redis_client, uses_redis

    return redis_client() if uses_redis() else None


def watched_tokens_add(tokens, *, seconds: float) -> None:
    """Want these tokens streamed for `seconds` more (a lease never shortened by a shorter one)."""
    tokens = [int(token) for token in tokens]
    if not tokens:
        return
    until = time.time() + seconds
    if (redis := _redis()) is None:
        with _lock:
            for token in tokens:
                _local_watched[token] = max(until, _local_watched.get(token, 0.0))
        return
    redis.zadd(WATCHED_TOKENS_KEY, dict.fromkeys(tokens, until), gt=True)


def watched_tokens_remove(tokens) -> None:
    tokens = [int(token) for token in tokens]
    if not tokens:
        return
    if (redis := _redis()) is None:
        with _lock:
            for token in tokens:
                _local_watched.pop(token, None)
        return
    redis.zrem(WATCHED_TOKENS_KEY, *tokens)


def watched_tokens() -> set[int]:
    """The tokens whose lease has not run out (the lapsed ones are dropped on the way)."""
    now = time.time()
    if (redis := _redis()) is None:
        with _lock:
            for token in [token for token, until in _local_watched.items() if until <= now]:
                del _local_watched[token]
            return set(_local_watched)
    with redis.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(WATCHED_TOKENS_KEY, "-inf", now)
        pipe.zrange(WATCHED_TOKENS_KEY, 0, -1)
        _, members = pipe.execute()
    return {int(token) for token in members}


def last_prices_write(prices: dict[int, str], *, received_at: float | None = None) -> None:
    """Each token's last price (a decimal string), stamped with when the stream heard it (epoch seconds)."""
    if not prices:
        return
    received_at = time.time() if received_at is None else received_at
    if (redis := _redis()) is None:
        with _lock:
            _local_last_prices.update(
                {token: {"last_price": price, "received_at": received_at} for token, price in prices.items()}
            )
        return
    redis.hset(LAST_PRICES_KEY, mapping=last_prices_fields(prices, received_at=received_at))


def last_prices_fields(prices: dict[int, str], *, received_at: float) -> dict[str, str]:
    """The last-prices hash's fields for a batch: each token's entry as JSON text, `{"last_price": "1234.5",
    "received_at": 1765000000.25}`. Written around one encoded string a tick: a stream writes hundreds of ticks a
    second, before it publishes them, and a dict encoded whole cost several times as much."""
    tail = f', "received_at": {float(received_at)!r}}}'
    return {str(token): '{"last_price": ' + json.dumps(price) + tail for token, price in prices.items()}


def last_prices_read(tokens) -> dict[int, dict]:
    tokens = [int(token) for token in tokens]
    if not tokens:
        return {}
    if (redis := _redis()) is None:
        with _lock:
            return {token: dict(_local_last_prices[token]) for token in tokens if token in _local_last_prices}
    values = redis.hmget(LAST_PRICES_KEY, [str(token) for token in tokens])
    return {token: json.loads(value) for token, value in zip(tokens, values, strict=True) if value is not None}


def ticks_flush() -> None:
    """Forget the watched set and the last prices (tests; Redis's are flushed with its DB)."""
    with _lock:
        _local_watched.clear()
        _local_last_prices.clear()


# --- quotes: in the default cache (Redis; this process's memory in the embedded mode) ---------------
# Per scope (a tenant's market data from one broker, `market.quotes.QuoteService.scope`): each instrument's last
# quote, kept for THOR_LIVE_STALE_SECONDS (fresh for its feed's `fresh_seconds` of it); the lock its upstream calls
# are made under; the failure that keeps readers off a failing broker for a moment; and the instruments
# asked for lately, which every upstream call also quotes where its batch has room.


def quote_key(scope: str, name: str) -> str:
    return f"thor:market:quote:{scope}:{name}"


def quotes_lock_key(scope: str) -> str:
    return f"thor:market:quotes:{scope}:lock"


def quotes_failed_key(scope: str) -> str:
    return f"thor:market:quotes:{scope}:failed"


def quotes_wanted_key(scope: str) -> str:
    return f"thor:market:quotes:{scope}:wanted"


WANTED_SECONDS = 600
_local_wanted: dict[str, dict[str, float]] = {}


def quotes_wanted_add(scope: str, names, now: float) -> None:
    """Remember that these names were asked for at `now` (epoch seconds; forgotten after WANTED_SECONDS)."""
    names = list(names)
    if not names:
        return
    key = quotes_wanted_key(scope)
    if (redis := _redis()) is None:
        with _lock:
            _local_wanted.setdefault(key, {}).update(dict.fromkeys(names, now))
        return
    with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(key, dict.fromkeys(names, now))
        pipe.expire(key, WANTED_SECONDS)
        pipe.execute()


def quotes_wanted(scope: str, now: float, limit: int) -> list[str]:
    """Up to `limit` names asked for within WANTED_SECONDS of `now`, the most recently asked first."""
    key, since = quotes_wanted_key(scope), now - WANTED_SECONDS
    if (redis := _redis()) is None:
        with _lock:
            wanted = {name: at for name, at in _local_wanted.get(key, {}).items() if at >= since}
            _local_wanted[key] = wanted
            return sorted(wanted, key=wanted.__getitem__, reverse=True)[:limit]
    with redis.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(key, "-inf", since)
        pipe.zrevrange(key, 0, limit - 1)
        _, names = pipe.execute()
    return [name.decode() for name in names]


def quotes_flush_local() -> None:
    """Forget the embedded mode's wanted names (tests; Redis's are flushed with its DB)."""
    with _lock:
        _local_wanted.clear()
