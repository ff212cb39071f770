"""Loading the master from every source (Kite's dump or a file, the US seed); what the tick stream watches."""

from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

from market import caches
from market.loading import LoadSummary, Progress, instruments_load
from market.models import Instrument
from market.sources import dump_file_rows, kite_dump_rows, us_seed_rows


def instruments_refresh(*, file: Path | None = None, progress: Progress | None = None) -> dict[str, LoadSummary]:
    """The day's load: Kite's dump (from `file` when given), then the US seed; a summary per source.

    The seed is not Schwab's whole listing (the symbols looked up since, market.instrument_search, are not in
    it), so nothing it lacks is marked expired."""
    kite_rows = dump_file_rows(file) if file else kite_dump_rows()
    return {
        Instrument.Source.KITE: instruments_load(rows=kite_rows, source=Instrument.Source.KITE, progress=progress),
        Instrument.Source.SCHWAB: instruments_load(
            rows=us_seed_rows(), source=Instrument.Source.SCHWAB, complete=False
        ),
    }


def ticks_watch(tokens: Iterable[int], *, seconds: float | None = None) -> None:
    """Have the market stream keep these instrument tokens subscribed (it picks them up within a second) for
    `seconds` (THOR_MARKET_WATCH_SECONDS by default): a watcher renews what it still wants before then, and
    what nobody renews is unsubscribed, as no watcher can tell that it was the last one."""
    caches.watched_tokens_add(tokens, seconds=settings.THOR_MARKET_WATCH_SECONDS if seconds is None else seconds)


def ticks_unwatch(tokens: Iterable[int]) -> None:
    """Stop streaming these tokens now, whoever else watches them (their renewals add them back)."""
    caches.watched_tokens_remove(tokens)
