"""Audit rows past retention (THOR_AUDIT_RETENTION_DAYS): removed only by `manage.py purge_audit`, an
operator's explicit act, and only as a prefix of each account's chain whose checkpoint the head keeps.

The chain stays verifiable: the head records how many events were purged and the hash of the last one,
which is what the first kept event names as prev_hash (and which covers everything removed). An account
whose chain does not verify is not purged: removing the evidence of an edit would launder it.
Order rows are never deleted; their events go, the orders stay.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.audit_chain import ChainCheck, chain_seal, chain_verify, head_locked
from accounts.models import OrderEvent

logger = logging.getLogger("accounts.audit_retention")


@dataclass
class PurgeResult:
    cutoff: datetime
    removed: dict[int, int] = field(default_factory=dict)  # account id -> events removed (or that would be)
    refused: list[ChainCheck] = field(default_factory=list)


def retention_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.THOR_AUDIT_RETENTION_DAYS)


def audit_purge(*, now: datetime | None = None, dry_run: bool = False) -> PurgeResult:
    """Remove, per account, the chain's prefix of events older than retention; keep its checkpoint."""
    result = PurgeResult(cutoff=retention_cutoff(now))
    chain_seal(wait=True)
    old = OrderEvent.objects.filter(created_at__lt=result.cutoff, chain_index__isnull=False)
    for account_id in sorted(set(old.order_by().values_list("account_id", flat=True).distinct())):
        with transaction.atomic():
            head = head_locked(account_id)
            check = chain_verify(account_id, seal=False)
            if not check.ok:
                logger.error("Audit purge refused for %s", check.describe())
                result.refused.append(check)
                continue
            assert head is not None  # head_locked waits: it always returns the row
            kept = OrderEvent.objects.filter(account_id=account_id, chain_index__gte=head.purged_count)
            first_young = (
                kept.filter(created_at__gte=result.cutoff).order_by("chain_index").values_list("chain_index", flat=True)
            ).first()
            # A prefix only: an old event sealed after a younger one (a long transaction) waits for that one.
            end = head.length if first_young is None else first_young
            if end <= head.purged_count:
                continue
            result.removed[account_id] = end - head.purged_count
            if dry_run:
                continue
            checkpoint = (
                head.last_hash if end == head.length else kept.values_list("prev_hash", flat=True).get(chain_index=end)
            )
            _prefix_delete(account_id=account_id, end=end)
            head.purged_count, head.purged_through_hash, head.purged_at = end, checkpoint, now or timezone.now()
            head.save(update_fields=["purged_count", "purged_through_hash", "purged_at"])
            logger.info(
                "Purged %d audit events of account %s older than %s (through chain_index %d, checkpoint %s)",
                result.removed[account_id],
                account_id,
                result.cutoff.date(),
                end - 1,
                checkpoint,
            )
    return result


def _prefix_delete(*, account_id: int, end: int) -> None:
    # Plain SQL on purpose: OrderEvent's manager refuses deletes, so that nothing else removes audit rows;
    # on PostgreSQL a trigger (migration 0010_audit_chain) refuses them too, unless this transaction says it is the purge.
    table = connection.ops.quote_name(OrderEvent._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config('thor.audit_purge', 'on', true)")
        cursor.execute(
            f"DELETE FROM {table} WHERE account_id = %s AND chain_index IS NOT NULL AND chain_index < %s",  # noqa: S608
            [account_id, end],
        )
