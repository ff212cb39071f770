"""The guard around every broker call, and the life of a connection: active, expired, revoked."""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from django.db import transaction
from django.utils import timezone

from brokers import health
from brokers.adapters.base import BrokerAdapter
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.models import BrokerConnection, BrokerKind
from brokers.registry import adapter_for
from brokers.services import tokens
from brokers.signals import connections_ended

logger = logging.getLogger("thor.brokers")
T = TypeVar("T")
Status = BrokerConnection.Status
SYNC_RECORD_INTERVAL = timedelta(seconds=1)


def broker_call(connection: BrokerConnection, call: Callable[[BrokerAdapter], T], *, account_id: str = "") -> T:
    """`call(adapter)` for this connection (and broker account, for brokers with several per login),
    keeping the connection's status honest.

    An access token that is expired or about to be is refreshed first where the broker allows it
    (Schwab); a connection that is not active, or whose session is past its expiry and cannot be
    renewed, raises a permanent TOKEN_EXPIRED BrokerError without calling the broker (the API answers
    409 reauth_required). A TOKEN_EXPIRED from the broker is answered by one forced refresh and one
    more try where a refresh token exists (the token was superseded), else it marks the connection
    expired. Success records the sync; either outcome is recorded for the connection's health
    (brokers.health). Not atomic on purpose: no transaction stays open across a
    broker call (the refresh holds its own row lock, see brokers.services.tokens).
    """
    connection_require_active(connection)
    try:
        try:
            result = call(adapter_for(connection, account_id=account_id))
        except BrokerError as error:
            if error.code != BrokerErrorCode.TOKEN_EXPIRED or connection.app.kind not in tokens.REFRESHABLE:
                raise
            outcome = tokens.connection_tokens_refresh(connection_id=connection.pk, force=True)
            connection.refresh_from_db()
            if outcome.action == "failed":
                raise _refresh_unavailable(outcome) from error
            if outcome.action != "refreshed":
                raise
            result = call(adapter_for(connection, account_id=account_id))
    except BrokerError as error:
        health.call_failed(connection, error)
        if error.code == BrokerErrorCode.TOKEN_EXPIRED:
            connection_mark_expired(connection=connection)
        else:
            BrokerConnection.objects.filter(pk=connection.pk).update(last_error=error.code.value)
            connection.last_error = error.code.value
        raise
    _sync_record(connection)
    health.call_succeeded(connection)
    return result


def _sync_record(connection: BrokerConnection) -> None:
    """Record a successful call: at most once every SYNC_RECORD_INTERVAL while nothing failed, since
    every order would otherwise pay one more write for a time only shown to the second."""
    now = timezone.now()
    if not connection.get_deferred_fields() & {"last_sync_at", "last_error"}:
        recent = connection.last_sync_at and now - connection.last_sync_at < SYNC_RECORD_INTERVAL
        if recent and not connection.last_error:
            return
    BrokerConnection.objects.filter(pk=connection.pk).update(last_sync_at=now, last_error="")
    connection.last_sync_at, connection.last_error = now, ""


def _refresh_unavailable(outcome) -> BrokerError:
    return BrokerError(
        "The broker could not renew the session just now; try again shortly.",
        code=BrokerErrorCode.UNAVAILABLE,
        broker_message=outcome.detail,
    )


# --- Connection lifecycle ----------------------------------------------------------------------


def connection_require_active(connection: BrokerConnection) -> None:
    """Raise a permanent TOKEN_EXPIRED BrokerError unless the session is usable; a session past its
    expiry is marked expired on the way, unless a refresh token can renew it (then it is renewed)."""
    # Only the expiry time is read first: a cached read of a live account loads nothing else (see
    # accounts.selectors.account_for_read_get); the refresh reads the row itself, under its lock.
    if connection.status == Status.ACTIVE and tokens.connection_refresh_due(connection):
        outcome = tokens.connection_tokens_refresh(connection_id=connection.pk)
        connection.refresh_from_db()
        if (
            outcome.action == "failed"
            and connection.access_expires_at is not None
            and connection.access_expires_at <= timezone.now()
        ):
            # The broker could not renew it just now: the link itself is fine, so this is no reauth.
            raise _refresh_unavailable(outcome)
    if (
        connection.status == Status.ACTIVE
        and connection.access_expires_at
        and connection.access_expires_at <= timezone.now()
    ):
        connection_mark_expired(connection=connection)
    if connection.status != Status.ACTIVE:
        raise BrokerError(
            "The broker session has ended; link the account again.", code=BrokerErrorCode.TOKEN_EXPIRED, permanent=True
        )


def connection_usable_as_is(connection: BrokerConnection) -> bool:
    """Whether connection_require_active would pass without doing anything: active, and no refresh nor
    expiry due yet. A read answered from the caches alone asks this, and leaves anything else to it."""
    expires_at = connection.access_expires_at
    return connection.status == Status.ACTIVE and (
        expires_at is None or expires_at > timezone.now() + tokens.refresh_margin()
    )


@transaction.atomic
def connection_mark_expired(*, connection: BrokerConnection, error_code: str = "token_expired") -> None:
    """The session is dead at the broker: forget its tokens so the user is asked to link again."""
    BrokerConnection.objects.filter(pk=connection.pk, status=Status.ACTIVE).update(
        status=Status.EXPIRED, last_error=error_code, access_token="", refresh_token="", updated_at=timezone.now()
    )
    connection.refresh_from_db()
    connections_ended([connection.pk])


def connection_revoke(*, connection: BrokerConnection) -> None:
    """End the session at the broker where it can, then wipe the tokens; the row stays as the audit.

    The broker call is best effort (the user's wish to unlink wins) and runs outside any transaction.
    """
    if connection.access_token and connection.status == Status.ACTIVE:
        try:
            adapter_for(connection).revoke()
        except BrokerError as error:
            logger.warning("Could not end broker session of connection %s: %s", connection.pk, error.code)
    BrokerConnection.objects.filter(pk=connection.pk).update(
        status=Status.REVOKED, access_token="", refresh_token="", last_error="", updated_at=timezone.now()
    )
    connection.refresh_from_db()
    connections_ended([connection.pk])


def kite_sessions_expire(*, now: datetime | None = None) -> int:
    """Mark every Kite session past its 06:00 IST end as expired; returns how many."""
    now = now or timezone.now()
    ended = BrokerConnection.objects.filter(app__kind=BrokerKind.KITE, status=Status.ACTIVE, access_expires_at__lte=now)
    connection_ids = list(ended.values_list("pk", flat=True))
    count = ended.update(status=Status.EXPIRED, last_error="session_expired", access_token="", updated_at=now)
    connections_ended(connection_ids)
    return count
