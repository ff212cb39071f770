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

from thor import caches, coordination

logger = logging.getLogger("thor.ratelimit")

# One token from each bucket, or none: a call that needs several budgets (a Kite order: its user's and its
# app's) spends none of them when one is empty. KEYS: the buckets; ARGV: rate, capacity per bucket.
# Answers the seconds until every bucket has a token (0: taken) and which bucket is shortest (1-based).
_TAKE_TOKENS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local levels, wait, short = {}, 0, 0
for i = 1, #KEYS do
  local rate, capacity = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tokens = tonumber(redis.call('HGET', KEYS[i], 'tokens') or capacity)
  local stamp = tonumber(redis.call('HGET', KEYS[i], 'stamp') or now)
  tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate)
  levels[i] = tokens
  if tokens < 1 and (1 - tokens) / rate > wait then wait, short = (1 - tokens) / rate, i end
end
for i = 1, #KEYS do
  local rate, capacity = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tokens = levels[i]
  if wait == 0 then tokens = tokens - 1 end
  redis.call('HSET', KEYS[i], 'tokens', tokens, 'stamp', now)
  redis.call('EXPIRE', KEYS[i], math.ceil(capacity / rate) + 1)
end
return {tostring(wait), short}
"""

_local_lock = threading.Lock()
_local_buckets: dict[str, tuple[float, float]] = {}
_redis_down = coordination.OccasionalWarning(logger)


@dataclass(frozen=True)
class Budget:
    """A bucket as `acquire` spends it: `rate` tokens per `per` seconds, a burst of `rate`."""

    bucket: str
    rate: float
    per: float = 1.0

    @property
    def capacity(self) -> float:
        return max(1.0, float(self.rate))


def _take_local(budgets: list[Budget]) -> tuple[float, int]:
    with _local_lock:
        now = time.monotonic()
        levels = []
        wait, short = 0.0, 0
        for index, budget in enumerate(budgets, start=1):
            tokens, stamp = _local_buckets.get(budget.bucket, (budget.capacity, now))
            tokens = min(budget.capacity, tokens + max(0.0, now - stamp) * budget.rate / budget.per)
            levels.append(tokens)
            needed = (1 - tokens) / (budget.rate / budget.per)
            if tokens < 1 and needed > wait:
                wait, short = needed, index
        for budget, tokens in zip(budgets, levels, strict=True):
            _local_buckets[budget.bucket] = (tokens - 1 if wait == 0 else tokens, now)
        return wait, short


def _take_redis(budgets: list[Budget]) -> tuple[float, int]:
    keys = [caches.bucket_key(budget.bucket) for budget in budgets]
    rates = [value for budget in budgets for value in (budget.rate / budget.per, budget.capacity)]
    try:
        wait, short = coordination.redis_client().eval(_TAKE_TOKENS, len(keys), *keys, *rates)
        return float(wait), int(short)
    except Exception as error:
        # The type only: a connection error's text may carry the Redis URL.
        _redis_down("Rate buckets unavailable, letting calls through: %s", type(error).__name__)
        return 0.0, 0


def _uses_redis():
    return coordination.uses_redis()


def acquire_all(budgets: list[Budget], *, wait: float = 0.0) -> Budget | None:
    """Take one token from every budget at once, or from none (one Redis round trip for all).

    Waits up to `wait` seconds for every bucket to have one; None when taken, else the budget that was
    short (the one that would have made the call wait longest).
    """
    take = _take_redis if _uses_redis() else _take_local
    deadline = time.monotonic() + wait
    while True:
        needed, short = take(budgets)
        if needed <= 0:
            return None
        # A failed take still counted as a refill step; sleep only as long as the deadline allows.
        if time.monotonic() + needed > deadline:
            return budgets[short - 1] if 0 < short <= len(budgets) else budgets[0]
        time.sleep(needed)


def acquire(bucket: str, *, rate: float, per: float = 1.0, wait: float = 0.0) -> bool:
    """Take one token from `bucket` (refilling at `rate` per `per` seconds, burst of `rate`).

    Waits up to `wait` seconds for a token; False when none could be had in time.
    """
    return acquire_all([Budget(bucket, rate, per)], wait=wait) is None


def _refilled(budget: Budget, tokens: float, stamp: float, now: float) -> float:
    return min(budget.capacity, tokens + max(0.0, now - stamp) * budget.rate / budget.per)


def refill(bucket: str) -> None:
    """Make `bucket` full again, as if never spent (a test's fresh start; an operator's reset)."""
    if not _uses_redis():
        with _local_lock:
            _local_buckets.pop(bucket, None)
        return
    try:
        coordination.redis_client().delete(caches.bucket_key(bucket))
    except Exception as error:
        _redis_down("Rate buckets unavailable, not refilled: %s", type(error).__name__)


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
            pipe.hmget(caches.bucket_key(budget.bucket), "tokens", "stamp")
        clock, *stored = pipe.execute()
    except Exception as error:
        _redis_down("Rate buckets unavailable, their levels are unknown: %s", type(error).__name__)
        return [None] * len(budgets)
    now = clock[0] + clock[1] / 1_000_000
    return [
        budget.capacity if tokens is None or stamp is None else _refilled(budget, float(tokens), float(stamp), now)
        for budget, (tokens, stamp) in zip(budgets, stored, strict=True)
    ]
