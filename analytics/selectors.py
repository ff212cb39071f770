"""Reads of the F&O and futures endpoints, from the stored snapshots. Read only: nothing here writes.

Market data, not anyone's account: the same for every user (the views still need a JWT). The beat task
(analytics.tasks.snapshot_chains) takes the snapshots; a read serves the latest stored one, saying
`source: stale` when it is older than two snapshot periods (the broker down, the quote budget spent, the
beat stopped). Answers are cached for one snapshot period (`source: cache`): no newer data can exist before
the next snapshot, and a new snapshot is a new key. With no snapshot stored at all, ChainNotSnapshotted:
the view decides what to do (it takes the first one through analytics.chain_snapshots).
"""

from datetime import date, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from analytics import chain_analysis, market_metrics
from analytics import moneyness_series as series_reads
from analytics.caches import cached_answer
from analytics.chain_analysis import QUOTE_FIELDS, ChainPoint
from analytics.errors import ChainNotSnapshotted, UnknownChoice
from analytics.expiries import day_start
from analytics.models import ChainQuote, ChainSnapshot

SIGNAL_POINTS = 60

# --- which chain, and how fresh ---------------------------------------------------------------


def known_underlyings() -> list[str]:
    stored = set(ChainSnapshot.objects.values_list("underlying", flat=True).distinct())
    return sorted(stored | set(settings.THOR_ANALYTICS_UNDERLYINGS))


def _require_underlying(underlying: str) -> None:
    # An index lookup; the full list (a scan of a year of snapshots) only for the 404 that shows it.
    if (
        underlying in settings.THOR_ANALYTICS_UNDERLYINGS
        or ChainSnapshot.objects.filter(underlying=underlying).exists()
    ):
        return
    raise UnknownChoice("underlying", underlying, known_underlyings())


def latest_snapshot_at(underlying: str) -> datetime | None:
    return (
        ChainSnapshot.objects.filter(underlying=underlying)
        .order_by("-taken_at")
        .values_list("taken_at", flat=True)
        .first()
    )


def chain_as_of(underlying: str) -> tuple[datetime, bool]:
    """When the latest stored snapshot was taken, and whether it is stale (older than two periods)."""
    latest = latest_snapshot_at(underlying)
    if latest is None:
        raise ChainNotSnapshotted(underlying)
    max_age = timedelta(seconds=2 * settings.THOR_ANALYTICS_SNAPSHOT_SECONDS)
    return latest, timezone.now() - latest > max_age


def _source(stale: bool, from_cache: bool) -> str:
    if stale:
        return "stale"
    return "cache" if from_cache else "live"


def _expiries_at(underlying: str, as_of: datetime) -> list[date]:
    return list(
        ChainSnapshot.objects.filter(underlying=underlying, taken_at=as_of)
        .order_by("expiry")
        .values_list("expiry", flat=True)
    )


def _pick_expiry(expiry: date | None, choices: list[date]) -> date:
    if expiry is None:
        if not choices:
            raise UnknownChoice("expiry", "nearest", [])
        return choices[0]
    if expiry not in choices:
        raise UnknownChoice("expiry", expiry.isoformat(), [choice.isoformat() for choice in choices])
    return expiry


# --- strike distribution ----------------------------------------------------------------------


def strike_distribution_get(*, underlying: str, expiry: date | None, option_side: str, strikes_around_atm: int) -> dict:
    _require_underlying(underlying)
    as_of, stale = chain_as_of(underlying)
    expiry = _pick_expiry(expiry, _expiries_at(underlying, as_of))
    params = {"u": underlying, "e": expiry, "s": option_side, "n": strikes_around_atm, "at": as_of}

    def compute() -> dict:
        snapshot = ChainSnapshot.objects.get(underlying=underlying, expiry=expiry, taken_at=as_of)
        chain = ChainPoint(expiry, as_of, snapshot.forward, snapshot.spot, snapshot.atm_strike)
        quotes = list(
            ChainQuote.objects.filter(
                underlying=underlying, expiry=expiry, taken_at=as_of, option_type__in=["CE", "PE"]
            )
            .order_by("strike", "option_type")
            .values(*QUOTE_FIELDS)
        )
        figures = chain_analysis.strike_distribution(
            chain,
            quotes,
            _opening_oi(underlying, expiry, as_of),
            option_side=option_side,
            strikes_around_atm=strikes_around_atm,
            rate=settings.THOR_ANALYTICS_RISK_FREE_RATE,
        )
        return {
            "underlying": underlying,
            "expiry": expiry,
            "as_of": as_of,
            "option_side": option_side,
            "strikes_around_atm": strikes_around_atm,
            **figures,
        }

    body, from_cache = cached_answer("strike-distribution", params, compute)
    return {**body, "source": _source(stale, from_cache)}


def _opening_oi(underlying: str, expiry: date, as_of: datetime) -> dict[int, int]:
    """OI of each contract at the day's first snapshot (India's day): what `oi_change` is measured from."""
    first = (
        ChainSnapshot.objects.filter(
            underlying=underlying, expiry=expiry, taken_at__gte=day_start(as_of), taken_at__lte=as_of
        )
        .order_by("taken_at")
        .values_list("taken_at", flat=True)
        .first()
    )
    if first is None:
        return {}
    rows = ChainQuote.objects.filter(underlying=underlying, expiry=expiry, taken_at=first).values_list(
        "instrument_token", "oi"
    )
    return dict(rows)


# --- moneyness series -------------------------------------------------------------------------


def moneyness_series_get(
    *,
    underlying: str,
    expiry: date | None,
    moneyness: str,
    option_side: str,
    metric: str,
    start: datetime,
    end: datetime,
    interval: str,
) -> dict:
    """The series' envelope and either `points` (a list) or `points_json` (PostgreSQL's JSON text of it)."""
    _require_underlying(underlying)
    as_of, stale = chain_as_of(underlying)
    if expiry is None:
        expiry = _pick_expiry(None, _expiries_at(underlying, as_of))
    elif not ChainSnapshot.objects.filter(underlying=underlying, expiry=expiry).exists():
        stored = ChainSnapshot.objects.filter(underlying=underlying).values_list("expiry", flat=True).distinct()
        _pick_expiry(expiry, sorted(stored))
    params = {
        "u": underlying,
        "e": expiry,
        "m": moneyness,
        "s": option_side,
        "k": metric,
        "f": start,
        "t": end,
        "i": interval,
        "at": as_of,
    }

    def compute() -> dict:
        series = {
            "underlying": underlying,
            "expiry": expiry,
            "option_type": "CE" if option_side == "call" else "PE",
            "strike_offset": series_reads.strike_offset_for(moneyness, option_side),
            "start": start,
            "end": end,
        }
        column, seconds = series_reads.SERIES_METRICS[metric], series_reads.INTERVAL_SECONDS[interval]
        points = points_json = None
        if series_reads.uses_database_json():
            points_json, count = series_reads.series_json(series, column, seconds)
        else:
            points = series_reads.series_points(series, column, seconds)
            count = len(points)
        return {
            "underlying": underlying,
            "expiry": expiry,
            "moneyness": moneyness,
            "option_side": option_side,
            "metric": metric,
            "interval": interval,
            "from": start,
            "to": end,
            "as_of": as_of,
            "count": count,
            "points": points,
            "points_json": points_json,
        }

    body, from_cache = cached_answer("moneyness-series", params, compute)
    return {**body, "source": _source(stale, from_cache)}


# --- futures ----------------------------------------------------------------------------------


def _futures_symbols() -> list[str]:
    return sorted(ChainQuote.objects.filter(option_type="FUT").values_list("underlying", flat=True).distinct())


def _require_futures(symbol: str) -> None:
    choices = sorted(set(_futures_symbols()) | set(settings.THOR_ANALYTICS_UNDERLYINGS))
    if symbol not in choices:
        raise UnknownChoice("symbol", symbol, choices)


def _futures_at(symbol: str, as_of: datetime) -> list[dict]:
    return list(
        ChainQuote.objects.filter(underlying=symbol, option_type="FUT", taken_at=as_of)
        .order_by("expiry")
        .values("expiry", "tradingsymbol", "last_price", "oi")
    )


def position_signals_get(*, symbol: str, interval: str) -> dict:
    _require_futures(symbol)
    as_of, stale = chain_as_of(symbol)
    thresholds = {
        "price_change_pct": settings.THOR_ANALYTICS_SIGNAL_PRICE_PCT,
        "oi_change_pct": settings.THOR_ANALYTICS_SIGNAL_OI_PCT,
    }

    def compute() -> dict:
        futures = _futures_at(symbol, as_of)
        near = futures[0] if futures else None
        points = []
        if near:
            seconds = series_reads.INTERVAL_SECONDS[interval]
            rows = (
                ChainQuote.objects.filter(
                    underlying=symbol,
                    option_type="FUT",
                    expiry=near["expiry"],
                    taken_at__gt=as_of - timedelta(seconds=seconds * (SIGNAL_POINTS + 1)),
                    taken_at__lte=as_of,
                )
                .order_by("taken_at")
                .values_list("taken_at", "last_price", "oi")
            )
            points = market_metrics.position_signals(
                series_reads.bucketed(list(rows), seconds),
                price_threshold=thresholds["price_change_pct"],
                oi_threshold=thresholds["oi_change_pct"],
            )
        return {
            "symbol": symbol,
            "expiry": near["expiry"] if near else None,
            "tradingsymbol": near["tradingsymbol"] if near else None,
            "interval": interval,
            "as_of": as_of,
            "thresholds": thresholds,
            "signal": points[-1].signal if points else market_metrics.NEUTRAL,
            "points": [point.__dict__ for point in points],
        }

    body, from_cache = cached_answer("position-signals", {"s": symbol, "i": interval, "at": as_of}, compute)
    return {**body, "source": _source(stale, from_cache)}


def rollover_metrics_get(*, symbol: str) -> dict:
    _require_futures(symbol)
    as_of, stale = chain_as_of(symbol)

    def compute() -> dict:
        spot = (
            ChainSnapshot.objects.filter(underlying=symbol, taken_at=as_of)
            .order_by("expiry")
            .values_list("spot", flat=True)
            .first()
        )
        opening_at = (
            ChainQuote.objects.filter(underlying=symbol, option_type="FUT", taken_at__gte=day_start(as_of))
            .order_by("taken_at")
            .values_list("taken_at", flat=True)
            .first()
        )
        opening_pct = chain_analysis.rollover_pct(_futures_at(symbol, opening_at)) if opening_at else None
        figures = chain_analysis.rollover(_futures_at(symbol, as_of), spot, as_of, opening_pct)
        return {"symbol": symbol, "as_of": as_of, **figures}

    body, from_cache = cached_answer("rollover-metrics", {"s": symbol, "at": as_of}, compute)
    return {**body, "source": _source(stale, from_cache)}
