"""The OAuth `state` every broker flow carries: signed, single-use, short-lived (DESIGN.md section 4).

The token is signed (thor.signed_states), so it cannot be forged or altered; its nonce lives in the cache
from issue to first use, so a replayed callback fails. It carries no credentials.

A state Thor signed that is only too old or already used still names the frontend it was issued for,
so the callback can send the browser back there with the reason (`state_expired`, `state_used`)
instead of stranding a popup; only a state Thor never signed leaves nowhere to go.
"""

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from brokers import caches
from identity.models import Tenant
from thor import signed_states

SALT = "thor.brokers.oauth-state"

# What a flow links: a user's own broker account, or the tenant's market-data session (an operator's login,
# brokers.services.market_data_login). Each completion refuses the other's states.
LINK = "link"
MARKET_DATA = "market_data"


class StateInvalid(signed_states.StateInvalid):
    """A broker flow's state that is forged, altered, expired or already used (`state`: an OAuthState or None)."""


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


STATES = signed_states.SignedStates(
    OAuthState, salt=SALT, max_age=lambda: settings.THOR_OAUTH_STATE_MAX_AGE, max_length=2000, error=StateInvalid
)


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
    return STATES.sign(state)


def consume(token: str) -> OAuthState:
    """The state behind `token`, usable once; raises StateInvalid otherwise."""
    state = STATES.read(token)
    # delete() tells whether the nonce was still there: only the first use finds it.
    if not cache.delete(caches.oauth_nonce_key(state.nonce)):
        raise StateInvalid("already used", code="state_used", state=state)
    return state


def origin_allowed(state: OAuthState) -> bool:
    """Whether the state's tenant still allows the frontend origin it leads back to (checked on every callback)."""
    tenant = Tenant.objects.filter(slug=state.tenant_slug).first()
    return tenant is not None and tenant.allows_origin(state.frontend_origin)
