"""Taking option-chain snapshots: quote a chain within the quote budget, compute IV and Greeks, store the rows.

One snapshot of an underlying quotes its futures and, for each of the nearest THOR_ANALYTICS_EXPIRIES
expiries, the THOR_ANALYTICS_STRIKES_AROUND_ATM strikes each side of the money. The ATM strike is found
from the previous snapshot's forward when it is recent, so a snapshot is one quote call per 500
instruments; without one, the futures are quoted first (one more call). Two strikes more than asked
are quoted each side, so an ATM strike that moved between the two still has its full wings. Each expiry's forward is its
future's price, or (for weeklies, which have none) put-call parity at the strike nearest the money.
"""

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics import caches, greeks
from analytics.errors import ChainUnavailable
from analytics.expiries import IST, MARKET_CLOSE_IST, years_to_expiry
from analytics.models import ChainQuote, ChainSnapshot
from analytics.quotes import ChainQuoteSource, chain_quote_source
from market.models import Instrument
from market.services import instruments_refresh
from thor import coordination

logger = logging.getLogger("analytics.chain_snapshots")

# A previous forward older than this is not trusted to place the ATM strike.
FORWARD_HINT_SECONDS = 3600
STRIKE_MARGIN = 2
# How long a reader may hold, and wait for, the lock on taking an underlying's first snapshot.
FIRST_SNAPSHOT_LOCK_SECONDS = 30
FIRST_SNAPSHOT_WAIT_SECONDS = 10


@dataclass(frozen=True)
class SnapshotSummary:
    underlying: str
    taken_at: datetime
    expiries: int
    rows: int
    quote_calls: int


def live_contracts(underlying: str, at: datetime) -> list[Instrument]:
    """Contracts still trading at `at`: the morning's dump lists those expiring today even after the close."""
    local = at.astimezone(IST)
    first_expiry = local.date() if local.time() < MARKET_CLOSE_IST else local.date() + timedelta(days=1)
    return list(
        Instrument.objects.filter(
            name=underlying,
            exchange="NFO",
            instrument_type__in=["CE", "PE", "FUT"],
            expiry__gte=first_expiry,
            expired=False,
        ).order_by("expiry", "strike", "instrument_type")
    )


def listed_underlyings() -> list[str]:
    """Underlyings with live contracts in the instrument master."""
    today = timezone.now().astimezone(IST).date()
    return sorted(
        Instrument.objects.filter(exchange="NFO", expiry__gte=today, expired=False)
        .exclude(name="")
        .values_list("name", flat=True)
        .distinct()
    )


def _name(instrument: Instrument) -> str:
    return f"{instrument.exchange}:{instrument.tradingsymbol}"


class _CountingSource:
    """Counts the quote calls a snapshot spends (one per QUOTE_BATCH names)."""

    def __init__(self, source: ChainQuoteSource):
        self.source = source
        self.calls = 0

    def quotes(self, names):
        names = list(names)
        self.calls += math.ceil(len(names) / 500)
        return self.source.quotes(names)


def _spot_hint(underlying: str, at: datetime) -> float | None:
    """The spot of the last snapshot, if recent: where the money was a minute ago."""
    return (
        ChainSnapshot.objects.filter(underlying=underlying, taken_at__gte=at - timedelta(seconds=FORWARD_HINT_SECONDS))
        .order_by("-taken_at")
        .values_list("spot", flat=True)
        .first()
    )


def _nearest_strikes(strikes: list[float], centre: float, each_side: int) -> set[float]:
    ordered = sorted(set(strikes))
    if not ordered:
        return set()
    middle = min(range(len(ordered)), key=lambda index: abs(ordered[index] - centre))
    return set(ordered[max(middle - each_side, 0) : middle + each_side + 1])


def _best(depth_side: list[dict]) -> tuple[float | None, int, int]:
    levels = [level for level in depth_side or [] if level.get("price")]
    if not levels:
        return None, 0, 0
    return (
        float(levels[0]["price"]),
        int(levels[0].get("quantity") or 0),
        sum(int(level.get("quantity") or 0) for level in levels[:5]),
    )


def _forward_from_parity(
    options: list[tuple[Instrument, dict]], hint: float, years: float, rate: float
) -> float | None:
    by_strike: dict[float, dict[str, float]] = defaultdict(dict)
    for instrument, quote in options:
        if quote.get("last_price"):
            by_strike[float(instrument.strike)][instrument.instrument_type] = float(quote["last_price"])
    paired = [strike for strike, sides in by_strike.items() if len(sides) == 2]
    if not paired:
        return None
    strike = min(paired, key=lambda candidate: abs(candidate - hint))
    return strike + (by_strike[strike]["CE"] - by_strike[strike]["PE"]) * math.exp(rate * years)


def chain_snapshot_take(
    *, underlying: str, source: ChainQuoteSource | None = None, at: datetime | None = None
) -> SnapshotSummary:
    """Quote one underlying's chain and store a snapshot of it; raises UpstreamError when quotes fail."""
    at = (at or timezone.now()).replace(microsecond=0)
    counting = _CountingSource(source or chain_quote_source())
    contracts = live_contracts(underlying, at)
    futures = [item for item in contracts if item.instrument_type == "FUT"]
    options = [item for item in contracts if item.instrument_type != "FUT"]
    expiries = sorted({item.expiry for item in options})[: settings.THOR_ANALYTICS_EXPIRIES]
    quotes: dict[str, dict] = {}
    rate = settings.THOR_ANALYTICS_RISK_FREE_RATE
    spot = _spot_hint(underlying, at)
    if spot is None and futures:
        quotes.update(counting.quotes([_name(item) for item in futures]))
        near = next((item for item in futures if quotes.get(_name(item), {}).get("last_price")), None)
        if near is not None:
            spot = float(quotes[_name(near)]["last_price"]) * math.exp(-rate * years_to_expiry(near.expiry, at))
    if spot is None:
        # No future to place the money: the middle of the listed strikes.
        strikes = sorted(float(item.strike) for item in options)
        spot = strikes[len(strikes) // 2] if strikes else 0.0
    wanted = [item for item in futures if _name(item) not in quotes]
    # A margin of strikes each side, so the ATM strike found after quoting still has its full wings.
    each_side = settings.THOR_ANALYTICS_STRIKES_AROUND_ATM + STRIKE_MARGIN
    for expiry in expiries:
        of_expiry = [item for item in options if item.expiry == expiry]
        centre = spot * math.exp(rate * years_to_expiry(expiry, at))
        keep = _nearest_strikes([float(item.strike) for item in of_expiry], centre, each_side)
        wanted += [item for item in of_expiry if float(item.strike) in keep]
    if wanted:
        quotes.update(counting.quotes([_name(item) for item in wanted]))
    rows = _store(underlying, at, futures, [item for item in wanted if item.instrument_type != "FUT"], quotes, spot)
    return SnapshotSummary(underlying, at, len(expiries), rows, counting.calls)


@transaction.atomic
def _store(underlying, at, futures, options, quotes, spot_hint) -> int:
    rate = settings.THOR_ANALYTICS_RISK_FREE_RATE
    future_price = {
        item.expiry: float(quotes[_name(item)]["last_price"])
        for item in futures
        if quotes.get(_name(item), {}).get("last_price")
    }
    rows: list[ChainQuote] = []
    snapshots: list[ChainSnapshot] = []
    by_expiry: dict[date, list[tuple[Instrument, dict]]] = defaultdict(list)
    for item in options:
        if _name(item) in quotes:
            by_expiry[item.expiry].append((item, quotes[_name(item)]))
    for expiry, quoted in sorted(by_expiry.items()):
        years = years_to_expiry(expiry, at)
        centre = spot_hint * math.exp(rate * years)
        forward = future_price.get(expiry) or _forward_from_parity(quoted, centre, years, rate)
        if not forward:
            continue
        strikes = sorted({float(item.strike) for item, _ in quoted})
        atm_index = min(range(len(strikes)), key=lambda index: abs(strikes[index] - forward))
        offsets = {strike: index - atm_index for index, strike in enumerate(strikes)}
        snapshots.append(
            ChainSnapshot(
                underlying=underlying,
                expiry=expiry,
                taken_at=at,
                spot=forward * math.exp(-rate * years),
                forward=forward,
                atm_strike=strikes[atm_index],
                years_to_expiry=years,
            )
        )
        rows += _option_rows(underlying, expiry, at, quoted, forward, years, rate, offsets)
    for item in futures:
        quote = quotes.get(_name(item))
        if quote and quote.get("last_price"):
            rows.append(_row(underlying, item, at, quote, strike_offset=0))
    ChainSnapshot.objects.bulk_create(snapshots, ignore_conflicts=True)
    ChainQuote.objects.bulk_create(rows, batch_size=1000)
    if rows:
        # The broker answered: a reader still without a snapshot may try again.
        transaction.on_commit(lambda: caches.flush_first_snapshot_failed(underlying))
    return len(rows)


def _row(underlying, item, at, quote, *, strike_offset, **computed) -> ChainQuote:
    depth = quote.get("depth") or {}
    bid, bid_quantity, depth_bid = _best(depth.get("buy"))
    ask, ask_quantity, depth_ask = _best(depth.get("sell"))
    return ChainQuote(
        taken_at=at,
        underlying=underlying,
        expiry=item.expiry,
        option_type=item.instrument_type,
        strike=float(item.strike),
        strike_offset=strike_offset,
        instrument_token=item.instrument_token,
        tradingsymbol=item.tradingsymbol,
        last_price=float(quote["last_price"]),
        volume=int(quote.get("volume") or 0),
        oi=int(quote.get("oi") or 0),
        bid=bid,
        ask=ask,
        bid_quantity=bid_quantity,
        ask_quantity=ask_quantity,
        depth_bid_quantity=depth_bid,
        depth_ask_quantity=depth_ask,
        **computed,
    )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _option_rows(underlying, expiry, at, quoted, forward, years, rate, offsets) -> list[ChainQuote]:
    priced = [(item, quote) for item, quote in quoted if quote.get("last_price")]
    if not priced:
        return []
    price = np.array([float(quote["last_price"]) for _, quote in priced])
    strike = np.array([float(item.strike) for item, _ in priced])
    is_call = np.array([item.instrument_type == "CE" for item, _ in priced])
    solved = greeks.implied_vol_black76(price, forward, strike, years, rate, is_call)
    computed = greeks.black76_greeks(forward, strike, years, solved.iv, rate, is_call)
    rows = []
    for index, (item, quote) in enumerate(priced):
        rows.append(
            _row(
                underlying,
                item,
                at,
                quote,
                strike_offset=offsets[float(item.strike)],
                iv=_finite(solved.iv[index]),
                iv_reason=int(solved.reason[index]),
                delta=_finite(computed.delta[index]),
                gamma=_finite(computed.gamma[index]),
                theta=_finite(computed.theta[index]),
                vega=_finite(computed.vega[index]),
                rho=_finite(computed.rho[index]),
            )
        )
    return rows


def chain_snapshots_take_all(*, at: datetime | None = None) -> list[SnapshotSummary]:
    """A snapshot of every configured underlying; one failing does not stop the others.

    With no live contract of any of them listed (a new installation, or the daily load missed after an expiry),
    the instruments dump is loaded first: a snapshot needs to know what to quote.
    """
    at = at or timezone.now()
    if not any(live_contracts(underlying, at) for underlying in settings.THOR_ANALYTICS_UNDERLYINGS):
        summaries = instruments_refresh()
        logger.info("No live contracts listed: instruments loaded first (%s)", summaries)
    source = chain_quote_source()
    summaries = []
    for underlying in settings.THOR_ANALYTICS_UNDERLYINGS:
        try:
            summaries.append(chain_snapshot_take(underlying=underlying, source=source, at=at))
        except Exception as error:
            logger.warning("Chain snapshot of %s failed: %s", underlying, type(error).__name__)
    return summaries


def chain_snapshots_prune(*, now: datetime | None = None) -> int:
    """Delete snapshots older than THOR_ANALYTICS_RETENTION_DAYS, in batches (no long lock on the table)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.THOR_ANALYTICS_RETENTION_DAYS)
    deleted = 0
    while True:
        batch = list(ChainQuote.objects.filter(taken_at__lt=cutoff).values_list("pk", flat=True)[:20000])
        if not batch:
            break
        deleted += ChainQuote.objects.filter(pk__in=batch).delete()[0]
    ChainSnapshot.objects.filter(taken_at__lt=cutoff).delete()
    return deleted


def chain_first_snapshot_take(*, underlying: str) -> None:
    """The first snapshot of an underlying none is stored of, for the reader that asked for it.

    The beat task keeps the snapshots coming; this is only for a new installation's first reads. One reader
    takes it (the others wait and read it); when it cannot be taken, ChainUnavailable, and nobody tries again
    for a snapshot period.
    """
    if caches.first_snapshot_failed(underlying):
        raise ChainUnavailable(underlying)
    with coordination.single_flight(
        caches.first_snapshot_lock_key(underlying),
        timeout=FIRST_SNAPSHOT_LOCK_SECONDS,
        wait=FIRST_SNAPSHOT_WAIT_SECONDS,
    ):
        if ChainSnapshot.objects.filter(underlying=underlying).exists():
            return  # another reader took it while this one waited
        if caches.first_snapshot_failed(underlying):
            raise ChainUnavailable(underlying)  # or failed to
        try:
            summary = chain_snapshot_take(underlying=underlying)
        except Exception as error:
            logger.warning("The first snapshot of the %s chain failed: %s", underlying, type(error).__name__)
            summary = None
        if summary is None or not summary.rows:
            caches.remember_first_snapshot_failed(underlying)
            raise ChainUnavailable(underlying)
