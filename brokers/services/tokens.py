"""Access-token refresh for brokers that have one (Schwab): on demand and ahead of expiry, one at a time.

Schwab rotates the refresh token on every refresh and a new token can invalidate the previous one,
so two processes refreshing the same connection lock one of them out. Every refresh therefore runs
under the connection's row lock (PostgreSQL: across processes and hosts, and without Redis), and
reads the row again once it holds the lock: a waiter finds the new token and sends nothing.
The lock is held across the HTTP call on purpose; it is the one call Thor makes in a transaction.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import Tokens
from brokers.models import BrokerConnection, BrokerKind
from brokers.registry import adapter_for
from brokers.signals import connections_ended

logger = logging.getLogger("thor.brokers.tokens")
Status = BrokerConnection.Status

# Brokers whose access tokens Thor renews with a refresh token (Kite has none for ordinary apps).
REFRESHABLE = (BrokerKind.SCHWAB,)


@dataclass(frozen=True)
class RefreshOutcome:
    connection_id: int
    action: str  # refreshed | fresh | expired | skipped | failed
    detail: str = ""


def refresh_margin() -> timedelta:
    return timedelta(seconds=settings.THOR_BROKER_REFRESH_MARGIN_SECONDS)


def refresh_lead() -> timedelta:
    return timedelta(seconds=settings.THOR_BROKER_REFRESH_LEAD_SECONDS)


def connection_refresh_due(
    connection: BrokerConnection, *, now: datetime | None = None, within: timedelta | None = None
) -> bool:
    """True when the access token expires within `within` (the on-demand margin unless given),
    and a refresh token can renew it."""
    now = now or timezone.now()
    return (
        connection.access_expires_at is not None
        and connection.access_expires_at <= now + (within if within is not None else refresh_margin())
        and connection.app.kind in REFRESHABLE
        and bool(connection.refresh_token)
    )


def token_budget_per_minute(kind: str) -> float:
    """The token endpoint's per-app budget; the adapter spends it call by call (thor.ratelimit)."""
    budgets: dict[str, float] = {BrokerKind.SCHWAB: settings.THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE}
    return budgets[kind]


def _expire(connection: BrokerConnection, reason: str, now: datetime) -> None:
    BrokerConnection.objects.filter(pk=connection.pk).update(
        status=Status.EXPIRED, last_error=reason[:500], access_token="", refresh_token="", updated_at=now
    )
    connections_ended([connection.pk])


def connection_tokens_refresh(
    *,
    connection_id: int,
    force: bool = False,
    wait: bool = True,
    dry_run: bool = False,
    within: timedelta | None = None,
) -> RefreshOutcome:
    """Renew the connection's access token when it expires within `within` (the on-demand margin
    unless given; the beat passes its lead), or at once with `force`, under its row lock.

    `wait=False` skips a connection another process is refreshing right now (the beat batches);
    callers that need the token now wait for that refresh and use its result.
    A refused refresh (invalid_client, revoked or expired refresh token) expires the connection at
    once and records why; the user must link again.
    """
    with transaction.atomic():
        # Only the connection row: locking its app would queue every refresh of the app behind one.
        rows = BrokerConnection.objects.select_for_update(skip_locked=not wait, of=("self",)).select_related("app")
        connection = rows.filter(pk=connection_id).first()
        if connection is None:
            return RefreshOutcome(connection_id, "skipped", "locked or gone")
        now = timezone.now()
        if connection.status != Status.ACTIVE or connection.app.kind not in REFRESHABLE:
            return RefreshOutcome(connection_id, "skipped", connection.status)
        if connection.refresh_expires_at is not None and connection.refresh_expires_at <= now:
            if not dry_run:
                _expire(connection, "refresh_token_expired", now)
            return RefreshOutcome(connection_id, "expired", "refresh_token_expired")
        if not force and not connection_refresh_due(connection, now=now, within=within):
            return RefreshOutcome(connection_id, "fresh")
        if dry_run:
            return RefreshOutcome(connection_id, "refreshed", "dry run")
        current = Tokens(
            access_token=connection.access_token,
            refresh_token=connection.refresh_token,
            access_expires_at=connection.access_expires_at,
            refresh_expires_at=connection.refresh_expires_at,
            broker_user_id=connection.broker_user_id,
        )
        try:
            tokens = adapter_for(connection).refresh(current)
        except BrokerError as error:
            if error.permanent and error.code in (BrokerErrorCode.TOKEN_EXPIRED, BrokerErrorCode.INVALID_INPUT):
                reason = error.broker_message or error.code.value
                logger.warning("Refresh refused for connection %s: %s", connection.pk, reason)
                _expire(connection, reason, now)
                return RefreshOutcome(connection_id, "expired", reason)
            BrokerConnection.objects.filter(pk=connection.pk).update(last_error=f"refresh_{error.code.value}"[:500])
            return RefreshOutcome(connection_id, "failed", error.code.value)
        connection.access_token = tokens.access_token
        connection.refresh_token = tokens.refresh_token or connection.refresh_token
        connection.access_expires_at = tokens.access_expires_at
        connection.refresh_expires_at = tokens.refresh_expires_at or connection.refresh_expires_at
        connection.last_error = ""
        connection.save(
            update_fields=[
                "access_token",
                "refresh_token",
                "access_expires_at",
                "refresh_expires_at",
                "last_error",
                "updated_at",
            ]
        )
        return RefreshOutcome(connection_id, "refreshed")


def refresh_due_connection_ids(
    *, now: datetime | None = None, lead: timedelta | None = None, per_app_limit: bool = True
) -> list[int]:
    """Active refreshable connections whose access token expires within `lead`, soonest first;
    those whose refresh token has run out are included so the refresh marks them expired.

    With `per_app_limit`, at most what each app's token budget allows until the next beat run: the
    rest wait their turn (soonest first) instead of being sent to be refused.
    """
    now = now or timezone.now()
    lead = lead if lead is not None else refresh_lead()
    rows = (
        BrokerConnection.objects.filter(app__kind__in=REFRESHABLE, status=Status.ACTIVE)
        .exclude(refresh_token="")
        .filter(Q(access_expires_at__lte=now + lead) | Q(refresh_expires_at__lte=now))
        .order_by("access_expires_at", "pk")
        .values_list("pk", "app_id", "app__kind")
    )
    taken: dict[int, int] = {}
    due = []
    for connection_id, app_id, kind in rows:
        if per_app_limit:
            allowance = max(1, int(token_budget_per_minute(kind) * settings.THOR_BROKER_REFRESH_EVERY_SECONDS / 60))
            if taken.get(app_id, 0) >= allowance:
                continue
            taken[app_id] = taken.get(app_id, 0) + 1
        due.append(connection_id)
    return due


def connection_reauth_due_at(connection: BrokerConnection) -> datetime | None:
    """When the user must link again: the refresh token's end, for brokers that refresh."""
    if connection.app.kind not in REFRESHABLE:
        return None
    return connection.refresh_expires_at


def connection_display_status(connection: BrokerConnection, *, now: datetime | None = None) -> str:
    """The stored status, with `expiring` for an active connection whose re-link falls due within
    THOR_BROKER_REAUTH_WARNING_SECONDS, and `expired` once that moment has passed."""
    now = now or timezone.now()
    due = connection_reauth_due_at(connection)
    if connection.status != Status.ACTIVE or due is None:
        return connection.status
    if due <= now:
        return Status.EXPIRED
    if due <= now + timedelta(seconds=settings.THOR_BROKER_REAUTH_WARNING_SECONDS):
        return "expiring"
    return connection.status
