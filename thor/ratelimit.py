"""Token buckets shared by every process, so Thor never sends a request it knows will get a 429.

With Redis each bucket is one hash updated by a Lua script (atomic across processes and
hosts), on one clock: Redis's own TIME, so hosts whose clocks disagree share a bucket fairly.
Without Redis (the embedded mode) the buckets live in this process, which is the only one.
If Redis is unreachable the call is let through, and that is logged (at most once a minute):
the broker's own limit still protects it, and a cache outage must never fail a request on its
own (DESIGN.md section 6).
"""

import logging
import threading
import time
from dataclasses import dataclass

from thor import coordination

logger = logging.getLogger("thor.ratelimit")

_TAKE_TOKEN = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or capacity)
local stamp = tonumber(redis.call('HGET', KEYS[1], 'stamp') or now)
tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return tostring(wait)
"""

_local_lock = threading.Lock()
_local_buckets: dict[str, tuple[float, float]] = {}
_redis_down = coordination.OccasionalWarning(logger)


def _take_local(bucket, rate, capacity):
    with _local_lock:
        now = time.monotonic()
        tokens, stamp = _local_buckets.get(bucket, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - stamp) * rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate
        _local_buckets[bucket] = (tokens, now)
        return wait


def _take_redis(bucket, rate, capacity):
    try:
        return float(coordination.redis_client().eval(_TAKE_TOKEN, 1, f"thor:bucket:{bucket}", rate, capacity))
    except Exception as error:
        # The type only: a connection error's text may carry the Redis URL.
        _redis_down("Rate buckets unavailable, letting calls through: %s", type(error).__name__)
        return 0.0


def _uses_redis():
    return coordination.uses_redis()


def acquire(bucket: str, *, rate: float, per: float = 1.0, wait: float = 0.0) -> bool:
    """Take one token from `bucket` (refilling at `rate` per `per` seconds, burst of `rate`).

    Waits up to `wait` seconds for a token; False when none could be had in time.
    """
    tokens_per_second = rate / per
    capacity = max(1.0, float(rate))
    take = _take_redis if _uses_redis() else _take_local
    deadline = time.monotonic() + wait
    while True:
        needed = take(bucket, tokens_per_second, capacity)
        if needed <= 0:
            return True
        # A failed take still counted as a refill step; sleep only as long as the deadline allows.
        if time.monotonic() + needed > deadline:
            return False
        time.sleep(needed)


@dataclass(frozen=True)
class Budget:
    """A bucket as `acquire` spends it: `rate` tokens per `per` seconds, a burst of `rate`."""

    bucket: str
    rate: float
    per: float = 1.0

    @property
    def capacity(self) -> float:
        return max(1.0, float(self.rate))


def _refilled(budget: Budget, tokens: float, stamp: float, now: float) -> float:
    return min(budget.capacity, tokens + max(0.0, now - stamp) * budget.rate / budget.per)


def tokens_left(budgets: list[Budget]) -> list[float | None]:
    """How many tokens each bucket holds now, without taking any: a bucket never spent (or idle long
    enough to have expired) is full. None for each when Redis does not answer. One round trip for all."""
    if not budgets:
        return []
    if not _uses_redis():
        with _local_lock:
            now = time.monotonic()
            stored = [_local_buckets.get(budget.bucket) for budget in budgets]
        return [
            budget.capacity if entry is None else _refilled(budget, *entry, now)
            for budget, entry in zip(budgets, stored, strict=True)
        ]
    try:
        pipe = coordination.redis_client().pipeline(transaction=False)
        pipe.time()  # the clock the buckets are kept on (see _TAKE_TOKEN)
        for budget in budgets:
            pipe.hmget(f"thor:bucket:{budget.bucket}", "tokens", "stamp")
        clock, *stored = pipe.execute()
    except Exception as error:
        _redis_down("Rate buckets unavailable, their levels are unknown: %s", type(error).__name__)
        return [None] * len(budgets)
    now = clock[0] + clock[1] / 1_000_000
    return [
        budget.capacity if tokens is None or stamp is None else _refilled(budget, float(tokens), float(stamp), now)
        for budget, (tokens, stamp) in zip(budgets, stored, strict=True)
    ]
