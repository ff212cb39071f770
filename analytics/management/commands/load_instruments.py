import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from analytics.instruments import InstrumentDumpUnavailable, dump_rows_from_file, dump_rows_from_kite, instruments_load

BAR_WIDTH = 40


class Command(BaseCommand):
    help = "Upsert the Kite instruments dump (from --file, or Kite's /instruments at THOR_KITE_API_ROOT)."

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, help="A Kite instruments CSV (columns as Kite's /instruments dump).")

    def handle(self, *args, file: Path | None = None, **options):
        try:
            rows = dump_rows_from_file(file) if file else dump_rows_from_kite()
        except InstrumentDumpUnavailable as error:
            raise CommandError(error.message) from None
        summary = instruments_load(rows=rows, progress=self._progress)
        self.stdout.write(
            f"Instruments: {summary.added} added, {summary.updated} updated, {summary.expired} expired, "
            f"{summary.unchanged} unchanged, {summary.skipped} skipped"
        )

    def _progress(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // max(total, 1)
        self.stderr.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}", ending="")
        if done == total:
            self.stderr.write("")
        sys.stderr.flush()
