"""Loading the master from every source: Kite's dump (or a file in its columns) and the US seed."""

from pathlib import Path

from market.loading import LoadSummary, Progress, instruments_load
from market.models import Instrument
from market.sources import dump_file_rows, kite_dump_rows, us_seed_rows


def instruments_refresh(*, file: Path | None = None, progress: Progress | None = None) -> dict[str, LoadSummary]:
    """The day's load: Kite's dump (from `file` when given), then the US seed; a summary per source."""
    kite_rows = dump_file_rows(file) if file else kite_dump_rows()
    return {
        Instrument.Source.KITE: instruments_load(rows=kite_rows, source=Instrument.Source.KITE, progress=progress),
        Instrument.Source.SCHWAB: instruments_load(rows=us_seed_rows(), source=Instrument.Source.SCHWAB),
    }
