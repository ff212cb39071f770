"""DRF throttles with their rates in THOR_THROTTLE_RATES, read at request time, that keep limiting when Redis is down.

A throttle keeps each client's recent requests in the shared cache. The cache ignores a Redis outage (it
answers a miss), which would let every request through: 40 password guesses, 40 answers. So a throttle asks
the cache in a way that raises (thor.coordination.cache_that_raises) and, while Redis cannot be reached,
counts in this process's memory instead: each process then allows the rate on its own, which is a looser
limit than one shared count, but a limit. The outage is logged at most once a minute per throttle scope.
"""

import logging
from functools import wraps

from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django.http import JsonResponse
from rest_framework.exceptions import Throttled
from rest_framework.throttling import SimpleRateThrottle

from thor.coordination import CACHE_ERRORS, OccasionalWarning, cache_that_raises
from thor.errors import error_body

logger = logging.getLogger("thor.throttles")


class _CountsWhereTheyCan:
    """The get/set a SimpleRateThrottle needs: the shared cache, or this process's memory while it is unreachable."""

    _in_process = LocMemCache("thor-throttles-while-redis-is-down", {"OPTIONS": {"MAX_ENTRIES": 10_000}})
    _outage_warnings: dict[str, OccasionalWarning] = {}

    def __init__(self, scope: str):
        self.scope = scope

    def get(self, key, default=None):
        try:
            return cache_that_raises().get(key, default)
        except CACHE_ERRORS as error:
            self._outage(error)
            return self._in_process.get(key, default)

    def set(self, key, value, timeout):
        try:
            cache_that_raises().set(key, value, timeout)
        except CACHE_ERRORS as error:
            self._outage(error)
            self._in_process.set(key, value, timeout)

    def _outage(self, error) -> None:
        warning = self._outage_warnings.setdefault(self.scope, OccasionalWarning(logger))
        # The type only: a connection error's text may carry the Redis address.
        warning(
            "Throttle %s counts in this process only: the cache is unreachable (%s)", self.scope, type(error).__name__
        )


def outage_forget() -> None:
    """Forget what throttles counted in this process while Redis was down, and that they said so."""
    _CountsWhereTheyCan._in_process.clear()
    _CountsWhereTheyCan._outage_warnings.clear()


class ResilientRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is THOR_THROTTLE_RATES[scope], counting in memory while Redis is down (see the module)."""

    scope: str

    def __init__(self):
        # DRF's throttle only calls the cache's get and set; its stub asks for a whole BaseCache.
        self.cache = _CountsWhereTheyCan(self.scope)  # type: ignore[assignment]
        super().__init__()

    def get_rate(self):
        return settings.THOR_THROTTLE_RATES[self.scope]


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
