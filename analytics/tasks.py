import logging

from celery import shared_task

from analytics.chain_snapshots import chain_snapshots_prune, chain_snapshots_take_all
from analytics.instruments import InstrumentDumpUnavailable, dump_rows_from_kite, instruments_load
from thor.upstream import UpstreamError

logger = logging.getLogger("analytics.tasks")


@shared_task(soft_time_limit=300, time_limit=360)
def load_instruments() -> dict:
    """The day's Kite instruments dump, upserted (the beat schedule runs it after Kite publishes it)."""
    summary = instruments_load(rows=dump_rows_from_kite())
    logger.info("Instruments loaded: %s", summary)
    return summary.__dict__


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
