"""The OAuth `state` every broker flow carries: signed, single-use, short-lived (DESIGN.md section 4).

The token is a `django.core.signing` value, so it cannot be forged or altered; its nonce lives in
the cache from issue to first use, so a replayed callback fails. It carries no credentials.

A state Thor signed that is only too old or already used still names the frontend it was issued for,
so the callback can send the browser back there with the reason (`state_expired`, `state_used`)
instead of stranding a popup; only a state Thor never signed leaves nowhere to go.
"""

import secrets
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core import signing
from django.core.cache import cache

from brokers import caches
from identity.models import Tenant

SALT = "thor.brokers.oauth-state"

# What a flow links: a user's own broker account, or the tenant's market-data session (an operator's login,
# brokers.services.market_data_login). Each completion refuses the other's states.
LINK = "link"
MARKET_DATA = "market_data"


class StateInvalid(Exception):
    """Forged, altered, expired or already used.

    `code` is what a browser may be told; `state` is the state as signed when only its age or its use
    failed it (Thor issued it, so where it leads back to is Thor's own choice), else None.
    """

    def __init__(self, reason: str, *, code: str = "state_invalid", state: "OAuthState | None" = None):
        super().__init__(reason)
        self.code = code
        self.state = state


@dataclass(frozen=True)
class OAuthState:
    user_id: int
    tenant_slug: str
    app_id: int
    connection_id: int
    frontend_origin: str
    nonce: str
    # States signed before these fields existed were all links.
    purpose: str = LINK
    # A market-data login's admin page to go back to (an admin path, checked when issued and when used).
    return_path: str = ""


def issue(
    *,
    user_id: int,
    tenant_slug: str,
    app_id: int,
    connection_id: int,
    frontend_origin: str,
    purpose: str = LINK,
    return_path: str = "",
) -> str:
    nonce = secrets.token_urlsafe(18)
    cache.set(caches.oauth_nonce_key(nonce), True, timeout=settings.THOR_OAUTH_STATE_MAX_AGE)
    state = OAuthState(
        user_id=user_id,
        tenant_slug=tenant_slug,
        app_id=app_id,
        connection_id=connection_id,
        frontend_origin=frontend_origin,
        nonce=nonce,
        purpose=purpose,
        return_path=return_path,
    )
    return signing.dumps(asdict(state), salt=SALT, compress=True)


def consume(token: str) -> OAuthState:
    """The state behind `token`, usable once; raises StateInvalid otherwise."""
    if not isinstance(token, str) or not token or len(token) > 2000:
        raise StateInvalid("missing")
    try:
        state = OAuthState(**signing.loads(token, salt=SALT, max_age=settings.THOR_OAUTH_STATE_MAX_AGE))
    except signing.SignatureExpired:
        raise StateInvalid("expired", code="state_expired", state=_signed(token)) from None
    except (signing.BadSignature, TypeError, ValueError):
        raise StateInvalid("bad signature") from None
    # delete() tells whether the nonce was still there: only the first use finds it.
    if not cache.delete(caches.oauth_nonce_key(state.nonce)):
        raise StateInvalid("already used", code="state_used", state=state)
    return state


def _signed(token: str) -> OAuthState | None:
    """The state of a token whose signature holds, whatever its age."""
    try:
        return OAuthState(**signing.loads(token, salt=SALT))
    except (signing.BadSignature, TypeError, ValueError):
        return None


def origin_allowed(state: OAuthState) -> bool:
    """Whether the state's tenant still allows the frontend origin it leads back to (checked on every callback)."""
    tenant = Tenant.objects.filter(slug=state.tenant_slug).first()
    return tenant is not None and tenant.allows_origin(state.frontend_origin)
