from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


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
