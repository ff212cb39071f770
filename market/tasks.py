import logging

from celery import shared_task

from market.services import instruments_refresh

logger = logging.getLogger("market.tasks")


@shared_task(name="market.tasks.load_instruments", soft_time_limit=300, time_limit=360)
def load_instruments() -> dict:
    """The day's instrument master (the beat schedule runs it after Kite publishes its dump)."""
    summaries = instruments_refresh()
    logger.info("Instruments loaded: %s", summaries)
    return {source: summary.as_dict() for source, summary in summaries.items()}
