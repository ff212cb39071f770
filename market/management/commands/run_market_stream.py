import gc
import logging
import signal
import threading

from django.core.management.base import BaseCommand

from market.schwab_runner import SchwabStreamRunner
from market.ticks import MarketStreamRunner

logger = logging.getLogger("market.ticks")


class Command(BaseCommand):
    help = (
        "Stream Kite's ticks (KiteTicker, full mode) for the watched instrument tokens on a tenant's market-data "
        "session, and Schwab's streamer (LEVELONE_EQUITIES) for the watched US symbols on its Schwab market-data "
        "session, into the last-prices hash in Redis and, a batch a message, to every server process's tick hub."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--tenant", default="", help="The tenant whose shared Kite and Schwab apps' sessions to use (default: any)."
        )

    def handle(self, *args, tenant: str = "", **options):
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        logger.info("Market stream starting")
        # What is alive once Django and the streams' modules are loaded is out of the collector's sight from now
        # on: a full collection here scanned all of it (tens of milliseconds) while a batch of ticks waited.
        gc.freeze()
        # Schwab's stream beside Kite's, in a thread of its own: each waits for its own session.
        schwab = threading.Thread(
            target=SchwabStreamRunner(tenant_slug=tenant).run, args=(stop,), name="schwab-stream", daemon=True
        )
        schwab.start()
        try:
            MarketStreamRunner(tenant_slug=tenant).run(stop)
        finally:
            stop.set()
            schwab.join(timeout=10)
        logger.info("Market stream stopped")
