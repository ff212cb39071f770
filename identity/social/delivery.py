"""Where a finished social login sends the browser, and how the tokens travel (seed 004, DESIGN.md section 5).

`redirect_uri` must sit on one of the tenant's allowed origins exactly; anything a browser could read
differently (credentials, `javascript:`, `//host`, backslashes) is refused before a login starts. The
final redirect carries seed 004's fields in the query, after `#`, or as a one-time code the SPA trades
at `POST /api/auth/exchange` within a minute, per the tenant's `token_delivery`.
"""

import secrets
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponseRedirect
from rest_framework import status

from identity import caches
from identity.models import Tenant, User
from identity.tokens import ThorTokenObtainPairSerializer
from thor.errors import ApplicationError

# The keys Thor sets on the final redirect; the SPA's own query keys other than these are kept.
DELIVERED_KEYS = (
    "access_token",
    "token_type",
    "role",
    "user_id",
    "expires_in",
    "email",
    "marketing_opt_in",
    "agent",
    "provider",
    "code",
    "error",
)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def redirect_uri_check(*, tenant: Tenant, redirect_uri: str) -> tuple[str, bool | None]:
    """The SPA page to return to (without its fragment) and its `marketing_opt_in`; 400 unless allowed."""
    if not redirect_uri or not tenant.allows_origin(redirect_uri):
        raise ApplicationError(
            "redirect_uri is not on an allowed origin of this tenant.",
            code="origin_not_allowed",
            errors={"redirect_uri": ["Not on an allowed origin."]},
        )
    parts = urlsplit(redirect_uri)
    opt_in = dict(parse_qsl(parts.query, keep_blank_values=True)).get("marketing_opt_in")
    marketing_opt_in = None
    if opt_in is not None:
        if opt_in.lower() not in _TRUE | _FALSE:
            raise ApplicationError(
                "marketing_opt_in must be true or false.",
                code="invalid",
                errors={"redirect_uri": ["marketing_opt_in must be true or false."]},
            )
        marketing_opt_in = opt_in.lower() in _TRUE
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, "")), marketing_opt_in


def _with_params(redirect_uri: str, params: dict, *, in_fragment: bool) -> str:
    parts = urlsplit(redirect_uri)
    kept = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in DELIVERED_KEYS]
    if in_fragment:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), urlencode(params)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode([*kept, *params.items()]), ""))


def _no_store(response: HttpResponseRedirect) -> HttpResponseRedirect:
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def login_fields(*, user: User, provider: str, email: str, access_token: str) -> dict:
    """Seed 004's fields, in its order."""
    return {
        "access_token": access_token,
        "token_type": "Bearer",
        "role": user.role,
        "user_id": str(user.pk),
        "expires_in": str(int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds())),
        "email": email,
        "marketing_opt_in": "true" if user.marketing_opt_in else "false",
        "agent": user.tenant.slug,
        "provider": provider,
    }


def login_redirect(*, user: User, provider: str, email: str, redirect_uri: str) -> HttpResponseRedirect:
    """The browser's way back to the SPA with the user's tokens, per the tenant's token delivery."""
    delivery = user.tenant.token_delivery
    if delivery == Tenant.TokenDelivery.CODE:
        code = secrets.token_urlsafe(32)
        lifetime = settings.THOR_SOCIAL_CODE_SECONDS
        # The cache drops the entry after its lifetime; the deadline inside makes that exact to the second.
        parked = {"user_id": user.pk, "provider": provider, "email": email, "until": time.time() + lifetime}
        cache.set(caches.social_login_code_key(code), parked, lifetime + 1)
        location = _with_params(
            redirect_uri, {"code": code, "agent": user.tenant.slug, "provider": provider}, in_fragment=False
        )
        return _no_store(HttpResponseRedirect(location))
    access = str(ThorTokenObtainPairSerializer.get_token(user).access_token)
    fields = login_fields(user=user, provider=provider, email=email, access_token=access)
    location = _with_params(redirect_uri, fields, in_fragment=delivery == Tenant.TokenDelivery.FRAGMENT)
    return _no_store(HttpResponseRedirect(location))


def error_redirect(*, redirect_uri: str, error: str, agent: str, provider: str) -> HttpResponseRedirect:
    location = _with_params(redirect_uri, {"error": error, "agent": agent, "provider": provider}, in_fragment=False)
    return _no_store(HttpResponseRedirect(location))


def login_code_exchange(*, code: str) -> dict:
    """Seed 004's fields plus a refresh token for a one-time code: once, within a minute."""
    key = caches.social_login_code_key(code)
    parked = cache.get(key) if code else None
    if parked is None or not cache.delete(key) or time.time() > parked["until"]:
        raise ApplicationError(
            "Unknown, expired or already used code.", code="not_found", status_code=status.HTTP_404_NOT_FOUND
        )
    user = User.objects.select_related("tenant").filter(pk=parked["user_id"], is_active=True).first()
    if user is None:
        raise ApplicationError(
            "Unknown, expired or already used code.", code="not_found", status_code=status.HTTP_404_NOT_FOUND
        )
    refresh = ThorTokenObtainPairSerializer.get_token(user)
    fields = login_fields(
        user=user, provider=parked["provider"], email=parked["email"], access_token=str(refresh.access_token)
    )
    return {**fields, "refresh_token": str(refresh)}
