import logging

from celery import shared_task

from analytics.chain_snapshots import chain_snapshots_prune, chain_snapshots_take_all
from market.sources import InstrumentDumpUnavailable
from thor.upstream import UpstreamError

logger = logging.getLogger("analytics.tasks")


@shared_task(soft_time_limit=50, time_limit=58)
def snapshot_chains() -> int:
    """A snapshot of every configured underlying's chain; the rows written."""
    try:
        summaries = chain_snapshots_take_all()
    except (UpstreamError, InstrumentDumpUnavailable) as error:
        logger.warning("No chain snapshot: %s", error.message)
        return 0
    return sum(summary.rows for summary in summaries)


@shared_task(soft_time_limit=1800, time_limit=1900)
def prune_snapshots() -> int:
    """Snapshots older than THOR_ANALYTICS_RETENTION_DAYS deleted."""
    return chain_snapshots_prune()
