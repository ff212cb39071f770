"""The OAuth `state` every broker flow carries: signed, single-use, short-lived (DESIGN.md section 4).

The token is a `django.core.signing` value, so it cannot be forged or altered; its nonce lives in
the cache from issue to first use, so a replayed callback fails. It carries no credentials.
"""

import secrets
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core import signing
from django.core.cache import cache

SALT = "thor.brokers.oauth-state"


class StateInvalid(Exception):
    """Forged, altered, expired or already used."""


@dataclass(frozen=True)
class OAuthState:
    user_id: int
    tenant_slug: str
    app_id: int
    connection_id: int
    frontend_origin: str
    nonce: str


def _nonce_key(nonce: str) -> str:
    return f"oauth-state-nonce:{nonce}"


def issue(*, user_id: int, tenant_slug: str, app_id: int, connection_id: int, frontend_origin: str) -> str:
    nonce = secrets.token_urlsafe(18)
    cache.set(_nonce_key(nonce), True, timeout=settings.THOR_OAUTH_STATE_MAX_AGE)
    state = OAuthState(
        user_id=user_id,
        tenant_slug=tenant_slug,
        app_id=app_id,
        connection_id=connection_id,
        frontend_origin=frontend_origin,
        nonce=nonce,
    )
    return signing.dumps(asdict(state), salt=SALT, compress=True)


def consume(token: str) -> OAuthState:
    """The state behind `token`, usable once; raises StateInvalid otherwise."""
    if not isinstance(token, str) or not token or len(token) > 2000:
        raise StateInvalid("missing")
    try:
        payload = signing.loads(token, salt=SALT, max_age=settings.THOR_OAUTH_STATE_MAX_AGE)
        state = OAuthState(**payload)
    except (signing.BadSignature, TypeError, ValueError):
        raise StateInvalid("bad signature or expired") from None
    # delete() tells whether the nonce was still there: only the first use finds it.
    if not cache.delete(_nonce_key(state.nonce)):
        raise StateInvalid("already used")
    return state
