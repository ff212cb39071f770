"""Thor's API authentication: simplejwt's Bearer JWT, with the user of a read taken from a short cache.

An SPA's reads should not load the same user row on every request (nor, with it, the state of the
token's session: a logged-out session's access tokens are refused at once, identity.sessions). So a read
(GET, HEAD, OPTIONS) asks the cache once, for the user and its session's state together, and keeps a user
it had to load for THOR_READ_CACHE_SECONDS (at most 5, identity.caches); a write loads the user from the
database, but in views that check it again under a lock (`user_checked_under_lock`). Revocation stays
bounded: saving, deleting or disabling a user and logging out (a refresh token blacklisted) flush the
cached copy, in every process (the cache is shared); anything else that changes users without a save is
seen by reads within the TTL.

The cached copy has no password hash (deferred): the reads never need it, and it should not sit in Redis.
"""

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext as _  # raised while a request is answered: no lazy form needed
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.permissions import SAFE_METHODS
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from identity import caches
from identity.models import User
from identity.sessions import SESSION_CLAIM, session_is_revoked


class ReadCachedJWTAuthentication(JWTAuthentication):
    """JWTAuthentication; on reads the user comes from the short identity cache (see the module)."""

    def authenticate(self, request):
        header = self.get_header(request)
        if header is None:
            return None
        raw_token = self.get_raw_token(header)
        if raw_token is None:
            return None
        validated_token = self.get_validated_token(raw_token)
        if settings.THOR_READ_CACHE_SECONDS and self._user_cached_for(request):
            return self._read_user(validated_token), validated_token
        return self.get_user(validated_token), validated_token

    def _user_cached_for(self, request) -> bool:
        # A view whose service reads the user's row again under its lock and refuses an inactive user there
        # (an order placement: accounts.account_locks.account_lock locks the account, its user and tenant) says so
        # with `user_checked_under_lock`: its writes cost no user SELECT of their own, and still never act
        # for a user disabled behind the cache's back.
        view = (request.parser_context or {}).get("view")
        return request.method in SAFE_METHODS or getattr(view, "user_checked_under_lock", False)

    def get_user(self, validated_token):
        """simplejwt's user, refused when the token's session was logged out (the WebSockets use it too)."""
        user = super().get_user(validated_token)
        _refuse_if_revoked(validated_token.get(SESSION_CLAIM))
        return user

    def _read_user(self, validated_token):
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError:
            raise InvalidToken(_("Token contained no recognizable user identification")) from None
        sid = validated_token.get(SESSION_CLAIM)
        # The one cache look-up of a read's authentication: the user and its session's state together.
        user, session_state = caches.user_and_session(user_id, sid)
        _refuse_if_revoked(sid, cached=session_state)
        if user is None:
            user = self._user_without_password(user_id, validated_token)
            caches.user_keep(user)
        return user

    def _user_without_password(self, user_id, validated_token):
        if api_settings.CHECK_REVOKE_TOKEN:
            # That check compares a hash of the password: load the user as simplejwt does.
            return super().get_user(validated_token)
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


class ReadCachedJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of simplejwt's class, for this subclass of it."""

    target_class = "identity.authentication.ReadCachedJWTAuthentication"


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def _forget_changed_user(sender, instance, **kwargs):
    caches.flush_user(user_id=instance.pk)


@receiver(post_save, sender=BlacklistedToken)
def _forget_logged_out_user(sender, instance, **kwargs):
    # Logging out (or a rotated refresh token) reloads the user: whatever changed meanwhile is seen at once.
    if instance.token.user_id is not None:
        caches.flush_user(user_id=instance.token.user_id)
