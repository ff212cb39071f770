import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from market.services import instruments_refresh
from market.sources import InstrumentDumpUnavailable

BAR_WIDTH = 40


class Command(BaseCommand):
    help = (
        "Load the instrument master: Kite's dump (from THOR_KITE_API_ROOT's /instruments, or --file) and the US "
        "seed; a progress bar on stderr."
    )

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, help="A CSV in Kite's /instruments columns instead of the API.")
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="Retry an unreachable dump this long (a broker sandbox started beside this command).",
        )

    def handle(self, *args, file: Path | None = None, wait: float = 0, **options):
        deadline = time.monotonic() + wait
        while True:
            self._started = time.monotonic()
            try:
                summaries = instruments_refresh(file=file, progress=self._progress)
                break
            except InstrumentDumpUnavailable as error:
                if file or time.monotonic() >= deadline:
                    raise CommandError(error.message) from None
                time.sleep(0.5)
        elapsed = time.monotonic() - self._started
        for source, summary in summaries.items():
            self.stdout.write(
                f"{source}: {summary.added} added, {summary.updated} updated, {summary.unchanged} unchanged, "
                f"{summary.expired} expired, {summary.skipped} skipped"
                + (f", {summary.unsized} of unknown contract size (paper refuses them)" if summary.unsized else "")
            )
        self.stdout.write(f"Loaded in {elapsed:.1f} s")

    def _progress(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // max(total, 1)
        rate = done / max(time.monotonic() - self._started, 1e-6)
        self.stderr.write(
            f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} rows, {rate:,.0f} rows/s", ending=""
        )
        if done == total:
            self.stderr.write("")
        sys.stderr.flush()
