"""Refresh tokens: rotation that a real SPA survives, reuse detection, and nothing at rest that could be replayed.

Rotation spends a refresh token on every refresh. An SPA whose access token expires with three requests in
flight sends three refreshes with the one token; strict rotation lets one win and logs the user out with the
others. So (RFC 9700 section 4.14):

- The first refresh of a token makes the new pair and keeps it, encrypted (RefreshTokenRotation); the same
  token presented again within THOR_REFRESH_REUSE_GRACE_SECONDS answers exactly that pair. The token's row is
  locked for the exchange, so parallel refreshes queue behind the first and all get its pair.
- Presented after the window, the token was replayed by someone who should not have it (or by a client too
  late to tell apart from one): every token of its sign-in is ended, the successor and its access tokens
  included, and the answer is 401. A sign-in is its family: every refresh keeps the `sid` claim of the
  login it descends from, and ending the session (identity.sessions) refuses all of them. A token from
  before sessions had ids has no family to end: it is refused, nothing more.

The outstanding-token table keeps a SHA-256 digest of each refresh token, never its text: simplejwt stores the
whole JWT there, where a database dump or the admin would hand it to anyone. Every save of a row goes through
`_digest_before_saving`, whichever of simplejwt's paths makes it (a login, a rotation, a logout).
"""

import hashlib
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from identity.models import RefreshTokenRotation, User
from identity.sessions import SESSION_CLAIM, session_is_revoked, session_revoke
from thor.errors import ApplicationError

logger = logging.getLogger("identity.refresh")

DIGEST_PREFIX = "sha256:"
# Far longer than any token Thor signs; anything longer is not worth decoding.
MAX_TOKEN_CHARS = 2000


def token_digest(token: str) -> str:
    # A refresh token is signed and carries a random jti: there is nothing to guess, so a plain hash will do.
    return DIGEST_PREFIX + hashlib.sha256(token.encode()).hexdigest()


@receiver(pre_save, sender=OutstandingToken)
def _digest_before_saving(sender, instance, **kwargs):
    if instance.token and not instance.token.startswith(DIGEST_PREFIX):
        instance.token = token_digest(instance.token)


class _PresentedRefreshToken(RefreshToken):
    """A refresh token verified as simplejwt verifies one (signature, expiry, type, jti), but not refused for
    being spent: whether a spent token answers its pair again or ends its sign-in is `refresh_rotate`'s call."""

    def check_blacklist(self) -> None:
        pass


def verified_refresh_token(raw) -> RefreshToken | None:
    """The refresh token in `raw` when it is one Thor signed and it has not expired, spent or not; else None."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_TOKEN_CHARS:
        return None
    try:
        # simplejwt annotates `token` as a Token; it is the encoded token, which it decodes.
        return _PresentedRefreshToken(raw)  # type: ignore[arg-type]
    except TokenError:
        return None


def _refused(detail: str) -> ApplicationError:
    return ApplicationError(detail, code="token_not_valid", status_code=401)


def refresh_rotate(*, raw: str) -> dict[str, str]:
    """The access and refresh tokens that replace the refresh token `raw` (see the module); a 401 when it has none."""
    token = verified_refresh_token(raw)
    if token is None:
        raise _refused("Token is invalid or expired.")
    sid = token.get(SESSION_CLAIM)
    if sid and session_is_revoked(sid):
        raise _refused("This session was logged out: sign in again.")
    user = _active_user(token)
    with transaction.atomic():
        spent = _locked_row(token)
        rotation = RefreshTokenRotation.objects.filter(token=spent).first()
        if rotation is not None and timezone.now() - rotation.rotated_at <= _grace():
            return json.loads(rotation.successor)
        if rotation is None and not BlacklistedToken.objects.filter(token=spent).exists():
            return _rotate(token, spent)
    # Outside the transaction, so that ending the sign-in commits although the answer is an error.
    if sid:
        session_revoke(sid=sid)
    logger.warning("A spent refresh token came back after its grace window: user %s's sign-in is ended", user.pk)
    raise _refused("This refresh token was already used: sign in again.")


def _active_user(token) -> User:
    user_id = token.get(api_settings.USER_ID_CLAIM)
    user = User.objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first() if user_id is not None else None
    if user is None or not api_settings.USER_AUTHENTICATION_RULE(user):
        raise _refused("No active account found for the given token.")
    return user


def _locked_row(token) -> OutstandingToken:
    """The token's outstanding row, locked until the transaction ends: refreshes of one token take turns."""
    jti = token[api_settings.JTI_CLAIM]
    row = OutstandingToken.objects.select_for_update().filter(jti=jti).first()
    if row is None:
        # Signed by Thor but never recorded (made by hand, or before the blacklist app kept rows).
        token.outstand()
        row = OutstandingToken.objects.select_for_update().get(jti=jti)
    return row


def _rotate(token, spent: OutstandingToken) -> dict[str, str]:
    BlacklistedToken.objects.create(token=spent)
    # The successor keeps every claim (the user, tenant, role and sign-in) with a new id and lifetime.
    token.set_jti()
    token.set_exp()
    token.set_iat()
    token.outstand()
    pair = {"access": str(token.access_token), "refresh": str(token)}
    RefreshTokenRotation.objects.create(token=spent, successor=json.dumps(pair), rotated_at=timezone.now())
    return pair


def _grace() -> timedelta:
    return timedelta(seconds=settings.THOR_REFRESH_REUSE_GRACE_SECONDS)


def refresh_rotations_purge() -> int:
    """Pairs past their window are never answered again: they go (the spent tokens stay blacklisted)."""
    return RefreshTokenRotation.objects.filter(rotated_at__lt=timezone.now() - _grace()).delete()[0]
