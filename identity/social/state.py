"""A social login's `state`: signed, single-use, ten minutes, and bound to the browser that started it.

The token the provider carries back is a `django.core.signing` value naming the tenant, the provider,
the SPA page to return to and the hash of a random secret; the secret itself sits in an HttpOnly,
SameSite=Lax cookie set on the browser that started the login. The callback only accepts a state whose
cookie came with it, so a callback URL finished by someone else (login CSRF, a forwarded link) logs
nobody in. The PKCE verifier and the OpenID nonce never leave the server: they wait in the cache under
the state's id, and taking them out is what makes the state single-use (Authlib's own session or
cache state is not used; GHSA-fg6f-75jq-6523).
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from thor import signed_states

SALT = "thor.identity.social-login-state"
COOKIE_PREFIX = "thor_login_"


class LoginStateInvalid(signed_states.StateInvalid):
    """Forged, altered, expired, already used, or for another tenant or provider (`state`: a LoginState or
    None; when set, Thor issued it, so its redirect_uri is one Thor allowed)."""


@dataclass(frozen=True)
class LoginState:
    state_id: str
    tenant_slug: str
    provider: str
    redirect_uri: str
    # None: the redirect_uri did not say, and an existing user's choice stands.
    marketing_opt_in: bool | None
    binding: str


STATES = signed_states.SignedStates(
    LoginState, salt=SALT, max_age=lambda: settings.THOR_SOCIAL_LOGIN_MAX_AGE, max_length=4000, error=LoginStateInvalid
)


@dataclass(frozen=True)
class IssuedState:
    token: str
    cookie_name: str
    cookie_value: str


def _secrets_key(state_id: str) -> str:
    return f"social-login-state:{state_id}"


def _binding(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


def cookie_name(state_id: str) -> str:
    # One cookie per login, so two logins started in two tabs do not undo each other.
    return f"{COOKIE_PREFIX}{state_id}"


def issue(
    *, tenant_slug: str, provider: str, redirect_uri: str, marketing_opt_in: bool | None, server_secrets: dict
) -> IssuedState:
    """A new state; `server_secrets` (PKCE verifier, nonce) wait in the cache for its one callback."""
    state_id = secrets.token_urlsafe(12)
    cookie_value = secrets.token_urlsafe(32)
    cache.set(_secrets_key(state_id), server_secrets, timeout=settings.THOR_SOCIAL_LOGIN_MAX_AGE)
    state = LoginState(
        state_id=state_id,
        tenant_slug=tenant_slug,
        provider=provider,
        redirect_uri=redirect_uri,
        marketing_opt_in=marketing_opt_in,
        binding=_binding(cookie_value),
    )
    return IssuedState(token=STATES.sign(state), cookie_name=cookie_name(state_id), cookie_value=cookie_value)


def read(token: str) -> LoginState:
    """The state behind `token` if it is Thor's, unaltered and younger than ten minutes; not yet used up."""
    return STATES.read(token)


def signed(token: str) -> LoginState | None:
    """The state behind `token` if Thor signed it, whatever its age (which flow a callback belongs to)."""
    return STATES.signed(token)


def browser_matches(state: LoginState, cookies) -> bool:
    value = cookies.get(cookie_name(state.state_id), "")
    return bool(value) and hmac.compare_digest(_binding(value), state.binding)


def consume(state: LoginState) -> dict:
    """The server-side secrets of `state`, once; raises LoginStateInvalid on every later call."""
    key = _secrets_key(state.state_id)
    server_secrets = cache.get(key)
    # delete() tells whether the entry was still there: only the first of two racing callbacks finds it.
    if server_secrets is None or not cache.delete(key):
        raise LoginStateInvalid("already used", code="state_used", state=state)
    return server_secrets
