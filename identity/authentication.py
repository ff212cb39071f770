"""Thor's API authentication: simplejwt's Bearer JWT, with the user of a read taken from a short cache.

An SPA polls its reads every few seconds for every open tab, and a read served from the snapshot cache
should not spend its time loading the same user row again (nor, with it, the state of the token's
session: a logged-out session's access tokens are refused at once, identity.sessions). So a read (GET, HEAD, OPTIONS) keeps the
user it loaded for THOR_READ_CACHE_SECONDS (at most 5) under `thor:identity:{user_id}`, and a write
always loads it from the database. Revocation stays bounded: saving or deleting a user and logging out
(a refresh token blacklisted) drop the cached copy at once, in every process (the cache is shared);
anything that changes users without a save (a bulk update) is seen by reads within the TTL.

The cached copy has no password hash (deferred): the reads never need it, and it should not sit in Redis.

The same token comes back every few seconds from the same tab, so each process keeps the tokens it has
verified (`VerifiedTokens`): a token is checked once (signature, type, claims) and then only its expiry.
What a token says never changes, so this cannot let anything through that checking again would refuse.

A view may name more cache keys its read will want (`read_cache_keys(request, user_id)`, e.g. the live
reads' account): they come back in the same round trip to the cache as the user, in `request.read_cache`,
so a read answered from the caches pays one round trip fewer. identity knows nothing of what they hold.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework import HTTP_HEADER_ENCODING
from rest_framework.permissions import SAFE_METHODS
from rest_framework_simplejwt.authentication import AUTH_HEADER_TYPE_BYTES, JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from identity.models import User
from identity.sessions import LIVE, SESSION_CLAIM, session_is_revoked, session_key
from thor import cache_reads


def identity_key(user_id) -> str:
    return f"thor:identity:{user_id}"


def identity_forget(*, user_id) -> None:
    """The next request of this user loads it from the database."""
    cache.delete(identity_key(user_id))


class VerifiedTokens:
    """The last `size` raw tokens this process verified, with their validated token, least recent out first."""

    def __init__(self, size: int):
        self.size = size
        self._tokens: OrderedDict[bytes, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, raw_token: bytes):
        with self._lock:
            token = self._tokens.get(raw_token)
            if token is not None:
                self._tokens.move_to_end(raw_token)
        # The expiry is the one thing about a token that time changes: past it, verify again (and be refused).
        if token is not None and token.payload.get("exp", 0) > time.time():
            return token
        return None

    def put(self, raw_token: bytes, token) -> None:
        with self._lock:
            self._tokens[raw_token] = token
            self._tokens.move_to_end(raw_token)
            while len(self._tokens) > self.size:
                self._tokens.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


# About one per signed-in tab a worker serves; a token is a few hundred bytes.
verified_tokens = VerifiedTokens(size=4096)


class ReadCachedJWTAuthentication(JWTAuthentication):
    """JWTAuthentication; on reads the user comes from the short identity cache (see the module)."""

    def get_validated_token(self, raw_token):
        token = verified_tokens.get(raw_token)
        if token is None:
            token = super().get_validated_token(raw_token)
            verified_tokens.put(raw_token, token)
        return token

    def authenticate(self, request):
        header = self.get_header(request)
        if header is None:
            return None
        raw_token = self.get_raw_token(header)
        if raw_token is None:
            return None
        validated_token = self.get_validated_token(raw_token)
        sid = validated_token.get(SESSION_CLAIM)
        if request.method not in SAFE_METHODS or not settings.THOR_READ_CACHE_SECONDS:
            return self.get_user(validated_token), validated_token
        return self._cached_user(request, validated_token, sid), validated_token

    def get_user(self, validated_token):
        """simplejwt's user, refused when the token's session was logged out (the WebSockets use it too)."""
        user = super().get_user(validated_token)
        _refuse_if_revoked(validated_token.get(SESSION_CLAIM))
        return user

    def _cached_user(self, request, validated_token, sid):
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError:
            raise InvalidToken(_("Token contained no recognizable user identification")) from None
        view = (getattr(request, "parser_context", None) or {}).get("view")
        wanted = getattr(view, "read_cache_keys", None)
        extra = list(wanted(request, user_id)) if wanted else []
        own = _identity_keys(user_id, sid)
        found = cache_reads.fetch([*own, *extra])
        _refuse_if_revoked(sid, cached=found.get(own[-1]) if sid else None)
        # What the view asked for, found or not (None), decoded when it reads it: it looks up nothing twice.
        request.read_cache = found
        user = found.get(own[0])
        if user is None:
            user = self._user_without_password(user_id, validated_token)
            cache.set(own[0], user, settings.THOR_READ_CACHE_SECONDS)
        return user

    def _user_without_password(self, user_id, validated_token):
        if api_settings.CHECK_REVOKE_TOKEN:
            # That check compares a hash of the password: load the user as simplejwt does.
            return self.get_user(validated_token)
        user = User.objects.defer("password").filter(**{api_settings.USER_ID_FIELD: user_id}).first()
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        return user


def _refuse_if_revoked(sid, *, cached=None) -> None:
    # Tokens from before sessions had ids carry none: they end when they expire, as before.
    if sid and session_is_revoked(sid, cached=cached):
        raise InvalidToken(_("This session was logged out: sign in again."))


def _identity_keys(user_id, sid) -> list[str]:
    """The user's cache entry, then (for a token with a session) its session's state."""
    return [identity_key(user_id), session_key(sid)] if sid else [identity_key(user_id)]


@dataclass(frozen=True)
class CachedIdentity:
    user_id: object
    # The entries a caller asked for, each None when the cache has none (decoded when read: thor.cache_reads).
    found: Mapping


def cached_identity(request, *, wanted: Callable[[object], list[str]]) -> CachedIdentity | None:
    """The request's user as the caches alone know it, with the entries `wanted(user_id)` names, in one
    round trip to the cache; None unless every part is known good: a Bearer token this process verified
    (and not expired since), its user cached (so active and unchanged, see the module), and its session
    cached as live. A None sends the request through DRF's authentication, which decides and answers
    (401 in its own words, a database look-up, a revoked session): this function never refuses anyone.
    """
    if not settings.THOR_READ_CACHE_SECONDS:
        return None
    header = request.META.get(api_settings.AUTH_HEADER_NAME)
    parts = header.encode(HTTP_HEADER_ENCODING).split() if header else ()
    if len(parts) != 2 or parts[0] not in AUTH_HEADER_TYPE_BYTES:
        return None
    token = verified_tokens.get(parts[1])
    user_id = token.get(api_settings.USER_ID_CLAIM) if token is not None else None
    if user_id is None:
        return None
    sid = token.get(SESSION_CLAIM)
    own = _identity_keys(user_id, sid)
    extra = wanted(user_id)
    found = cache_reads.fetch([*own, *extra])
    # A cached user is an active, unchanged one (see the module): its presence is all this needs.
    if not found.has(own[0]) or (sid and found[own[1]] != LIVE):
        return None
    return CachedIdentity(user_id=user_id, found=found)


class ReadCachedJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of simplejwt's class, for this subclass of it."""

    target_class = "identity.authentication.ReadCachedJWTAuthentication"


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def _forget_changed_user(sender, instance, **kwargs):
    identity_forget(user_id=instance.pk)


@receiver(post_save, sender=BlacklistedToken)
def _forget_logged_out_user(sender, instance, **kwargs):
    # Logging out (or a rotated refresh token) reloads the user: whatever changed meanwhile is seen at once.
    if instance.token.user_id is not None:
        identity_forget(user_id=instance.token.user_id)
