import logging
import signal
import threading

from django.core.management.base import BaseCommand

from market.ticks import MarketStreamRunner

logger = logging.getLogger("market.ticks")


class Command(BaseCommand):
    help = (
        "Stream Kite's ticks (KiteTicker, full mode) for the watched instrument tokens on a tenant's market-data "
        "session, into the last-prices hash in Redis and the channel layer's ticks.<token> groups."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--tenant", default="", help="The tenant whose shared Kite app's session to use (default: any)."
        )

    def handle(self, *args, tenant: str = "", **options):
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        logger.info("Market stream starting")
        MarketStreamRunner(tenant_slug=tenant).run(stop)
        logger.info("Market stream stopped")
