from functools import wraps

from django.conf import settings
from django.http import JsonResponse
from rest_framework.exceptions import Throttled
from rest_framework.throttling import SimpleRateThrottle

from thor.errors import error_body


class ScopedIPRateThrottle(SimpleRateThrottle):
    """Per client IP, with the rate read from THOR_THROTTLE_RATES at request time."""

    def get_rate(self):
        return settings.THOR_THROTTLE_RATES[self.scope]

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginRateThrottle(ScopedIPRateThrottle):
    scope = "login"


class OAuthStartRateThrottle(ScopedIPRateThrottle):
    scope = "oauth_start"


class OrderRateThrottle(SimpleRateThrottle):
    """Per user: order placement, modification and cancellation."""

    scope = "orders"

    def get_rate(self):
        return settings.THOR_THROTTLE_RATES[self.scope]

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
    if throttled.wait:
        response["Retry-After"] = str(int(throttled.wait))
    return response
