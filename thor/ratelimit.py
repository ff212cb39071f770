"""Rate limits shared by every process, so Thor never sends a request it knows will get a 429.

A Budget is "at most `rate` calls in any `per` seconds", kept as a sliding log: the times of the calls it
granted in the last `per` seconds. A call is granted when fewer than `rate` lie in the window that ends now,
else it waits until the oldest that stands in its way leaves the window. Not a token bucket: a bucket whose
burst is a window's count lets up to twice that through one window after a quiet spell (a full burst, then a
window's refill), and a broker counts the window, not the bucket. Here no window of `per` seconds, however it
falls against the broker's own, ever holds more than `rate`: Kite's 10 orders a second per user is the
exchange's rule, not a target.

With Redis each log is one sorted set updated by a Lua script (atomic across processes and hosts), on one
clock: Redis's own TIME, so hosts whose clocks disagree share a log fairly. Without Redis (the embedded mode)
the logs live in this process, which is the only one. If Redis is unreachable the call is let through, and
that is logged (at most once a minute): the broker's own limit still protects it, and a cache outage must
never fail a request on its own (DESIGN.md section 6).
"""

import bisect
import itertools
import logging
import math
import threading
import time
from dataclasses import dataclass

from thor import caches, coordination

logger = logging.getLogger("thor.ratelimit")

# A call from every log, or from none: a call that needs several budgets (a Kite order: its user's and its
# app's) spends none of them when one is full. KEYS: the logs; ARGV: rate, seconds per log. A log's members
# are the grants' times (with the counts, to stay unique). Answers the seconds until every log has room (0:
# granted), which log stands longest in the way (1-based) and the grant's member in every log.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local counts, wait, short = {}, 0, 0
for i = 1, #KEYS do
  local rate, seconds = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - seconds)
  local count = redis.call('ZCARD', KEYS[i])
  counts[i] = count
  if count >= rate then
    local first = count - math.ceil(rate)
    local blocking = redis.call('ZRANGE', KEYS[i], first, first, 'WITHSCORES')
    local needed = math.max(tonumber(blocking[2]) + seconds - now, 0.000001)
    if needed > wait then wait, short = needed, i end
  end
end
local member = clock[1] .. '.' .. clock[2] .. ':' .. table.concat(counts, ',')
if wait == 0 then
  for i = 1, #KEYS do
    redis.call('ZADD', KEYS[i], now, member)
    redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 * i]) * 1000) + 1000)
  end
end
return {tostring(wait), short, member}
"""

# A grant's call is over: its member in each log moves to now. KEYS: the logs; ARGV: the member, seconds per log.
_SETTLE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
for i = 1, #KEYS do
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) then
    redis.call('ZADD', KEYS[i], 'XX', now, ARGV[1])
    redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[i + 1]) * 1000) + 1000)
  end
end
return 0
"""

# How many calls each log holds in its window now, without granting any. KEYS: the logs; ARGV: seconds per log.
_COUNT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local counts = {}
for i = 1, #KEYS do
  counts[i] = redis.call('ZCOUNT', KEYS[i], '(' .. (now - tonumber(ARGV[i])), '+inf')
end
return counts
"""

_local_lock = threading.Lock()
# Each bucket's grants in order: (time, number), the number naming the grant for its settle.
_local_logs: dict[str, list[tuple[float, int]]] = {}
_local_numbers = itertools.count()
_redis_down = coordination.OccasionalWarning(logger)


def _local_now() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class Budget:
    """A limit as `acquire` spends it: at most `rate` calls in any `per` seconds."""

    bucket: str
    rate: float
    per: float = 1.0

    @property
    def capacity(self) -> float:
        return max(1.0, float(self.rate))


def _in_window(log: list[tuple[float, int]], budget: Budget, now: float) -> list[tuple[float, int]]:
    """The log (its grants, in order) without those that left the window."""
    gone = bisect.bisect_right(log, (now - budget.per, math.inf))
    del log[:gone]
    return log


def _take_local(budgets: list[Budget]) -> tuple[float, int, int]:
    with _local_lock:
        now = _local_now()
        wait, short = 0.0, 0
        logs = [_in_window(_local_logs.setdefault(budget.bucket, []), budget, now) for budget in budgets]
        for index, (budget, log) in enumerate(zip(budgets, logs, strict=True), start=1):
            if len(log) >= budget.capacity:
                needed = max(log[len(log) - int(budget.capacity)][0] + budget.per - now, 1e-6)
                if needed > wait:
                    wait, short = needed, index
        number = next(_local_numbers)
        if wait == 0:
            for log in logs:
                bisect.insort(log, (now, number))
        return wait, short, number


def _take_redis(budgets: list[Budget]) -> tuple[float, int, str | None]:
    keys = [caches.bucket_key(budget.bucket) for budget in budgets]
    limits = [value for budget in budgets for value in (budget.capacity, budget.per)]
    try:
        wait, short, member = coordination.redis_client().eval(_TAKE, len(keys), *keys, *limits)
        return float(wait), int(short), member.decode() if isinstance(member, bytes) else member
    except Exception as error:
        # The type only: a connection error's text may carry the Redis URL.
        _redis_down("Rate limits unavailable, letting calls through: %s", type(error).__name__)
        return 0.0, 0, None


def _settle_local(budgets: tuple[Budget, ...], number: int) -> None:
    with _local_lock:
        now = _local_now()
        for budget in budgets:
            log = _local_logs.get(budget.bucket, [])
            for index, (granted, held) in enumerate(log):
                if held == number:
                    del log[index]
                    bisect.insort(log, (max(now, granted), number))
                    break


def _settle_redis(budgets: tuple[Budget, ...], member: str) -> None:
    keys = [caches.bucket_key(budget.bucket) for budget in budgets]
    try:
        coordination.redis_client().eval(_SETTLE, len(keys), *keys, member, *[budget.per for budget in budgets])
    except Exception as error:
        _redis_down("Rate limits unavailable, a call's time not moved: %s", type(error).__name__)


def _uses_redis():
    return coordination.uses_redis()


@dataclass(frozen=True)
class Refusal:
    """Why a call was not granted: the budget that stood in the way and the seconds until it has room."""

    budget: Budget
    retry_after: float


@dataclass(frozen=True)
class Grant:
    """A call granted by its budgets, counted in their windows from the moment it was granted. `settle()` when the
    call is over counts it from then: the broker received it somewhere in between, so a window counted from the
    answer never lets the next call reach the broker inside the broker's own window, however long each call took
    on its way (a first call that opens a connection is slower than the next)."""

    budgets: tuple[Budget, ...]
    member: str | int | None

    def settle(self) -> None:
        if self.member is None:
            return
        if isinstance(self.member, int):
            _settle_local(self.budgets, self.member)
        else:
            _settle_redis(self.budgets, self.member)


def reserve(budgets: list[Budget], *, wait: float = 0.0) -> Grant | Refusal:
    """Grant one call from every budget at once, or from none (one Redis round trip for all).

    Waits up to `wait` seconds for every budget to have room; the Grant, else the budget that stood in the way
    (the one that would have made the call wait longest) and how long it would have."""
    take = _take_redis if _uses_redis() else _take_local
    deadline = time.monotonic() + wait
    while True:
        needed, short, member = take(budgets)
        if needed <= 0:
            return Grant(tuple(budgets), member)
        # Sleep only as long as the deadline allows.
        if time.monotonic() + needed > deadline:
            return Refusal(budgets[short - 1] if 0 < short <= len(budgets) else budgets[0], needed)
        time.sleep(needed)


def refusal(budgets: list[Budget], *, wait: float = 0.0) -> Refusal | None:
    """`reserve`'s refusal, None when the call was granted (counted from now on)."""
    reserved = reserve(budgets, wait=wait)
    return reserved if isinstance(reserved, Refusal) else None


def acquire(bucket: str, *, rate: float, per: float = 1.0, wait: float = 0.0) -> bool:
    """Grant one call from `bucket` (at most `rate` in any `per` seconds).

    Waits up to `wait` seconds for room; False when there was none in time.
    """
    return refusal([Budget(bucket, rate, per)], wait=wait) is None


def refill(bucket: str) -> None:
    """Forget every call `bucket` granted, as if it had never been spent (a test's fresh start; an operator's
    reset)."""
    if not _uses_redis():
        with _local_lock:
            _local_logs.pop(bucket, None)
        return
    try:
        coordination.redis_client().delete(caches.bucket_key(bucket))
    except Exception as error:
        _redis_down("Rate limits unavailable, not reset: %s", type(error).__name__)


def tokens_left(budgets: list[Budget]) -> list[float | None]:
    """How many more calls each budget would grant now, without granting any: one never spent (or idle for
    its window) has its whole rate. None for each when Redis does not answer. One round trip for all."""
    if not budgets:
        return []
    if not _uses_redis():
        with _local_lock:
            now = _local_now()
            counts = [
                len(_in_window(_local_logs[budget.bucket], budget, now)) if budget.bucket in _local_logs else 0
                for budget in budgets
            ]
    else:
        keys = [caches.bucket_key(budget.bucket) for budget in budgets]
        try:
            counts = coordination.redis_client().eval(_COUNT, len(keys), *keys, *[budget.per for budget in budgets])
        except Exception as error:
            _redis_down("Rate limits unavailable, their levels are unknown: %s", type(error).__name__)
            return [None] * len(budgets)
    return [max(budget.capacity - int(count), 0.0) for budget, count in zip(budgets, counts, strict=True)]
