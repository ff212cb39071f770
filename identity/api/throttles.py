"""Refresh's throttles: per refresh token and per user, never per address alone, so that an office behind one NAT
address can refresh every session it has. A token that does not verify is a guess, and counts against the
login's per-IP rate."""

from rest_framework_simplejwt.settings import api_settings

from identity.refresh import verified_refresh_token
from thor.throttles import LoginRateThrottle, ResilientRateThrottle


def _presented_token(request):
    """The request's refresh token when it verifies, or None; decoded once however many throttles ask."""
    if not hasattr(request, "_thor_refresh_token"):
        data = request.data
        request._thor_refresh_token = verified_refresh_token(data.get("refresh") if hasattr(data, "get") else None)
    return request._thor_refresh_token


class _PerClaimRateThrottle(ResilientRateThrottle):
    """Keyed by one claim of the presented refresh token; a token that does not verify is not counted here."""

    claim: str

    def get_cache_key(self, request, view):
        token = _presented_token(request)
        if token is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": token.get(self.claim)}


class RefreshTokenRateThrottle(_PerClaimRateThrottle):
    scope, claim = "refresh_token", api_settings.JTI_CLAIM


class RefreshUserRateThrottle(_PerClaimRateThrottle):
    scope, claim = "refresh_user", api_settings.USER_ID_CLAIM


class UnverifiedRefreshRateThrottle(LoginRateThrottle):
    """A refresh token that does not verify counts as a login attempt from its address."""

    def get_cache_key(self, request, view):
        return None if _presented_token(request) is not None else super().get_cache_key(request, view)
