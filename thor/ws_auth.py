"""Sign-in for WebSockets with the API's JWT access token.

Browsers cannot put an Authorization header on a WebSocket, so the token comes as the subprotocol
pair `["bearer", "<token>"]` (which keeps it out of URLs and access logs) or as the `token` query
parameter. It is checked as the REST API checks it (rest_framework_simplejwt's JWTAuthentication):
an access token, not expired, of an active user. `scope["user"]` is that user or AnonymousUser;
the consumer decides what an anonymous socket gets.
"""

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken

BEARER_SUBPROTOCOL = "bearer"


def token_from_scope(scope) -> str | None:
    subprotocols = scope.get("subprotocols") or []
    if BEARER_SUBPROTOCOL in subprotocols[:-1]:
        return subprotocols[subprotocols.index(BEARER_SUBPROTOCOL) + 1]
    tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return tokens[0] if tokens else None


def accepted_subprotocol(scope) -> str | None:
    """`bearer` when the client offered it: a browser drops a connection that does not pick one of its offers."""
    return BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in (scope.get("subprotocols") or []) else None


def user_for_token(token: str) -> tuple[object, float | None]:
    """The token's user and when the token expires (epoch seconds), or AnonymousUser and None."""
    authentication = JWTAuthentication()
    try:
        validated = authentication.get_validated_token(token)
        return authentication.get_user(validated), float(validated["exp"])
    except (InvalidToken, AuthenticationFailed):
        return AnonymousUser(), None


class JWTAuthMiddleware:
    """ASGI middleware: puts the token's user (or AnonymousUser) in `scope["user"]`, and the token's
    expiry in `scope["token_expires_at"]` so a socket does not outlive its sign-in."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        token = token_from_scope(scope)
        user, expires_at = await database_sync_to_async(user_for_token)(token) if token else (AnonymousUser(), None)
        return await self.inner({**scope, "user": user, "token_expires_at": expires_at}, receive, send)
