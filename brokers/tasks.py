from celery import shared_task
from django.conf import settings

from brokers.services import kite_sessions_expire
from brokers.services.tokens import connection_tokens_refresh, refresh_due_connection_ids, refresh_lead


@shared_task
def expire_kite_sessions() -> int:
    """Kite sessions die at 06:00 IST; the beat schedule runs this just after."""
    return kite_sessions_expire()


@shared_task
def refresh_due_broker_tokens() -> int:
    """Beat: hand the connections whose access token expires soon to the workers, in batches.

    Soonest first, so a budget that runs short delays the tokens with the most time left. A
    connection already being refreshed elsewhere is skipped by its batch (row lock), never twice.
    """
    due = refresh_due_connection_ids()
    size = settings.THOR_BROKER_REFRESH_BATCH_SIZE
    for start in range(0, len(due), size):
        refresh_broker_tokens_batch.delay(due[start : start + size])
    return len(due)


@shared_task
def refresh_broker_tokens_batch(connection_ids: list[int]) -> dict[str, int]:
    """Refresh each connection that is still due; returns how many ended in each outcome."""
    counts: dict[str, int] = {}
    for connection_id in connection_ids:
        outcome = connection_tokens_refresh(connection_id=connection_id, wait=False, within=refresh_lead())
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
    return counts
