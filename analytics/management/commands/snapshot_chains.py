from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.chain_snapshots import chain_snapshot_take
from thor.upstream import UpstreamError


class Command(BaseCommand):
    help = "Take one option-chain snapshot of each underlying (default: THOR_ANALYTICS_UNDERLYINGS)."

    def add_arguments(self, parser):
        parser.add_argument("--underlying", action="append", help="e.g. NIFTY; repeat for more.")

    def handle(self, *args, underlying=None, **options):
        for name in underlying or settings.THOR_ANALYTICS_UNDERLYINGS:
            try:
                summary = chain_snapshot_take(underlying=name.upper())
            except UpstreamError as error:
                raise CommandError(f"{name}: {error.message}") from None
            self.stdout.write(
                f"{summary.underlying}: {summary.rows} rows over {summary.expiries} expiries at "
                f"{summary.taken_at:%Y-%m-%d %H:%M:%S%z} in {summary.quote_calls} quote calls"
            )
