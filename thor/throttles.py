"""DRF throttles with their rates in THOR_THROTTLE_RATES, read at request time, that count atomically in Redis
and keep limiting when Redis is down.

With Redis, a throttle's window is a sorted set of the times of the requests it admitted (thor.caches names
it), and one Lua script per request drops the times older than the duration, admits the request if fewer
than the rate remain, and records it: one round trip, atomic across threads, processes and hosts. DRF's own
SimpleRateThrottle reads the history and writes it back in two round trips, so requests sent in parallel all
read the same history and all pass: a password guesser sending forty at once had forty guesses. The window
keeps DRF's semantics (a time leaves it `duration` seconds later, on the throttle's `timer`, the app hosts'
clock as in DRF); each request is its own member, so two in the same microsecond both count. `wait()` is
DRF's Retry-After: the seconds until the window has a free slot.

Without Redis (the embedded mode: one process, the local-memory cache) a throttle counts as DRF does, in the
default cache, under a lock so that this process's threads cannot all read the same history. While Redis
cannot be reached (the script raises one of CACHE_ERRORS) a throttle counts the same way in this process's
memory instead: each process then allows the rate on its own, which is a looser limit than one shared count,
but a limit; a cache that answered the outage as a miss would let every request through. The outage is
logged at most once a minute per throttle scope, with the error's type only.
"""

import logging
import threading
import uuid
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.http import JsonResponse
from rest_framework.exceptions import Throttled
from rest_framework.throttling import SimpleRateThrottle

from thor import caches
from thor.coordination import CACHE_ERRORS, OccasionalWarning, redis_client, uses_redis
from thor.errors import error_body

logger = logging.getLogger("thor.throttles")

# KEYS[1]: the window. ARGV: now, the latest time already out of the window (now - duration), the rate, this
# request's member, the window's life in milliseconds. Times go in and come out as strings: Lua would print
# a number with 14 digits and lose the microseconds. Answers whether the request was admitted, how many the
# window holds, and the time whose leaving frees a slot (the oldest, or the one that brings the count under a
# rate lowered since), '' for an empty window.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local count, limit, admitted = redis.call('ZCARD', KEYS[1]), tonumber(ARGV[3]), 0
if count < limit then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  count, admitted = count + 1, 1
end
local rank = math.max(0, count - limit)
local frees = redis.call('ZRANGE', KEYS[1], rank, rank, 'WITHSCORES')
return {admitted, count, frees[2] or ''}
"""

_in_process = LocMemCache("thor-throttles-while-redis-is-down", {"OPTIONS": {"MAX_ENTRIES": 10_000}})
_in_process_lock = threading.Lock()
_outage_warnings: dict[str, OccasionalWarning] = {}


def outage_forget() -> None:
    """Forget what throttles counted in this process while Redis was down, and that they said so."""
    _in_process.clear()
    _outage_warnings.clear()


class _History:
    """The get/set DRF's counting needs, on a local-memory cache, by the same digest key as the Redis window."""

    def __init__(self, scope: str, store):
        self.scope, self.store = scope, store

    def get(self, key, default=None):
        return self.store.get(caches.throttle_key(self.scope, key), default)

    def set(self, key, value, timeout):
        self.store.set(caches.throttle_key(self.scope, key), value, timeout)


class ResilientRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is THOR_THROTTLE_RATES[scope], counted atomically in Redis (see the module)."""

    scope: str
    # Set by DRF's __init__ from the rate; its stub leaves them out.
    num_requests: int
    duration: int
    # What the script answered: (admitted, how many the window holds, when a slot frees); None when counted here.
    _window: tuple[bool, int, float | None] | None = None

    def get_rate(self):
        return settings.THOR_THROTTLE_RATES[self.scope]

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        if not uses_redis():
            return self._count_here(request, view, cache)
        self.now = self.timer()
        try:
            admitted, count, frees = redis_client().register_script(_ADMIT)(
                keys=[caches.throttle_key(self.scope, self.key)],
                args=[
                    repr(self.now),
                    repr(self.now - self.duration),
                    self.num_requests,
                    uuid.uuid4().hex,
                    int(self.duration * 1000),
                ],
            )
        except CACHE_ERRORS as error:
            self._outage(error)
            return self._count_here(request, view, _in_process)
        self._window = (bool(admitted), int(count), float(frees) if frees else None)
        return bool(admitted)

    def wait(self):
        if self._window is None:
            return super().wait()
        admitted, count, frees = self._window
        remaining = self.duration if frees is None else self.duration - (self.now - frees)
        if not admitted:
            return max(0.0, remaining)
        # Asked after an admission (DRF does not): DRF's pace, the time left spread over the slots left.
        return remaining / (self.num_requests - count + 1)

    def _count_here(self, request, view, store) -> bool:
        """DRF's own counting, in a cache of this process; one thread at a time reads and writes the history."""
        self._window = None
        # DRF's throttle only calls the cache's get and set; its stub asks for a whole BaseCache.
        self.cache = _History(self.scope, store)  # type: ignore[assignment]
        with _in_process_lock:
            return super().allow_request(request, view)

    def _outage(self, error) -> None:
        warning = _outage_warnings.setdefault(self.scope, OccasionalWarning(logger))
        # The type only: a connection error's text may carry the Redis address.
        warning(
            "Throttle %s counts in this process only: the cache is unreachable (%s)", self.scope, type(error).__name__
        )


class ScopedIPRateThrottle(ResilientRateThrottle):
    """Per client IP."""

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginRateThrottle(ScopedIPRateThrottle):
    scope = "login"


class OAuthStartRateThrottle(ScopedIPRateThrottle):
    scope = "oauth_start"


class OrderRateThrottle(ResilientRateThrottle):
    """Per user: order placement, modification and cancellation."""

    scope = "orders"

    def get_cache_key(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class AdminLoginRateThrottle(ScopedIPRateThrottle):
    scope = "admin_login"


def throttle_posts(view, throttle_class):
    """A plain Django view (the admin's login form) with a DRF throttle on its POSTs.

    DRF throttles only its own views; the admin login is Django's, and otherwise takes any number
    of password guesses. Showing the form (GET) costs nothing.
    """

    @wraps(view)
    def throttled(request, *args, **kwargs):
        if request.method == "POST":
            throttle = throttle_class()
            if not throttle.allow_request(request, None):
                return _throttled_response(throttle.wait())
        return view(request, *args, **kwargs)

    return throttled


def _throttled_response(wait):
    # The same answer as a throttled API view, built the way the one exception handler builds it.
    throttled = Throttled(wait)
    response = JsonResponse(error_body(throttled.detail, throttled.status_code, "throttled"), status=429)
    # Throttled sets `wait` in __init__; its stub leaves the attribute out.
    if throttled.wait:  # type: ignore[attr-defined]
        response["Retry-After"] = str(int(throttled.wait))  # type: ignore[attr-defined]
    return response
