"""Sign-in for WebSockets: a one-time ticket, or the API's JWT access token.

Browsers cannot put an Authorization header on a WebSocket. The SPA trades its access token for a
ticket (`POST /api/ws/ticket`) and connects with the subprotocol pair `["ticket", "<ticket>"]` (the
Sec-WebSocket-Protocol header: never in a URL, so never in a log or a proxy's history) or `?ticket=`:
the ticket is good for one connection within THOR_WS_TICKET_SECONDS, so one that leaks is already spent.
The token itself works too, as the pair `["bearer", "<token>"]` or as the `token` query parameter. A token is checked as the REST API checks it
(rest_framework_simplejwt's JWTAuthentication): an access token, not expired, of an active user.
`scope["user"]` is that user or AnonymousUser; the consumer decides what an anonymous socket gets.
"""

import hashlib
import logging
import secrets
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.settings import api_settings as drf_settings
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken

from thor.coordination import CACHE_ERRORS, OccasionalWarning, cache_that_raises
from thor.errors import ApplicationError

logger = logging.getLogger("thor.ws_auth")
_tickets_down = OccasionalWarning(logger)

BEARER_SUBPROTOCOL = "bearer"
TICKET_SUBPROTOCOL = "ticket"
# Long enough that guessing one in its 30 seconds is hopeless; only its hash is stored.
TICKET_BYTES = 32
ANONYMOUS: tuple[object, float | None, dict] = (AnonymousUser(), None, {})


def token_from_scope(scope) -> str | None:
    return _subprotocol_value(scope, BEARER_SUBPROTOCOL) or _query_value(scope, "token")


def ticket_from_scope(scope) -> str | None:
    return _subprotocol_value(scope, TICKET_SUBPROTOCOL) or _query_value(scope, "ticket")


def _subprotocol_value(scope, name: str) -> str | None:
    """The offer after `name` in the client's subprotocols: `["ticket", "<ticket>"]` names the ticket."""
    subprotocols = scope.get("subprotocols") or []
    if name in subprotocols[:-1]:
        return subprotocols[subprotocols.index(name) + 1]
    return None


def _query_value(scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def accepted_subprotocol(scope) -> str | None:
    """`ticket` or `bearer`, whichever the client offered (a browser drops a connection that does not pick one
    of its offers); never the offer after it, the secret."""
    offered = scope.get("subprotocols") or []
    return next((name for name in (TICKET_SUBPROTOCOL, BEARER_SUBPROTOCOL) if name in offered), None)


def _jwt_authentication() -> JWTAuthentication:
    # The API's own JWT class (its checks, such as a logged-out session, included), whichever it is.
    # DRF's settings import these dotted paths into classes; the stub types the setting as the strings.
    authentication_classes: list[type] = drf_settings.DEFAULT_AUTHENTICATION_CLASSES  # type: ignore[assignment]
    for authentication_class in authentication_classes:
        if issubclass(authentication_class, JWTAuthentication):
            return authentication_class()
    return JWTAuthentication()


def user_for_token(token: str) -> tuple[object, float | None, dict]:
    """The token's user, when the token expires (epoch seconds) and its claims; or ANONYMOUS."""
    authentication = _jwt_authentication()
    try:
        # simplejwt annotates the raw token as bytes; it decodes a str as well (a header's is bytes).
        validated = authentication.get_validated_token(token)  # type: ignore[arg-type]
        return authentication.get_user(validated), float(validated["exp"]), dict(validated.payload)
    except (InvalidToken, AuthenticationFailed):
        return ANONYMOUS


def _ticket_key(ticket: str) -> str:
    return "ws-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def ws_ticket_issue(*, user, sign_in_expires_at: float | None, sign_in_claims: dict | None = None) -> str:
    """A ticket for one socket of this user; the socket still ends when the sign-in behind it does (it
    expires, or its session is logged out: the claims of the token it was bought with go with it)."""
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    issued = {"user_id": user.pk, "expires_at": sign_in_expires_at, "claims": dict(sign_in_claims or {})}
    try:
        # Asked so that it raises: a ticket the cache never stored could not open a socket (503, not 201).
        cache_that_raises().set(_ticket_key(ticket), issued, settings.THOR_WS_TICKET_SECONDS)
    except CACHE_ERRORS as error:
        _tickets_down("WebSocket tickets cannot be stored: the cache is unreachable (%s)", type(error).__name__)
        raise ApplicationError(
            "Socket sign-in is unavailable right now; try again shortly, or connect with the access token.",
            code="service_unavailable",
            status_code=503,
        ) from None
    return ticket


def user_for_ticket(ticket: str) -> tuple[object, float | None, dict]:
    """The ticket's user, once: the first connection spends it (an atomic add), a second gets AnonymousUser."""
    key = _ticket_key(ticket)
    issued = cache.get(key)
    if not issued or not cache.add(key + ":spent", 1, settings.THOR_WS_TICKET_SECONDS):
        return ANONYMOUS
    cache.delete(key)
    user = get_user_model().objects.filter(pk=issued["user_id"], is_active=True).first()
    return (user, issued["expires_at"], issued.get("claims", {})) if user else ANONYMOUS


def sign_in_for_scope(scope) -> tuple[object, float | None, dict]:
    ticket = ticket_from_scope(scope)
    if ticket:
        return user_for_ticket(ticket)
    token = token_from_scope(scope)
    return user_for_token(token) if token else ANONYMOUS


class JWTAuthMiddleware:
    """ASGI middleware: puts the ticket's or token's user (or AnonymousUser) in `scope["user"]`, when the
    sign-in expires in `scope["token_expires_at"]`, so a socket does not outlive it, and the sign-in's
    token claims in `scope["token_claims"]`."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        user, expires_at, claims = await database_sync_to_async(sign_in_for_scope)(scope)
        sign_in = {"user": user, "token_expires_at": expires_at, "token_claims": claims}
        return await self.inner({**scope, **sign_in}, receive, send)
