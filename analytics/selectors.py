"""Reads of the F&O and futures endpoints, from the stored snapshots.

Market data, not anyone's account: the same for every user (the views still need a JWT). A chain older
than two snapshot periods is refreshed once under a single-flight lock; when that fails (the broker is
down, the quote budget is spent) the last snapshot is served saying `source: stale`. Answers are cached
for one snapshot period (`source: cache`), since no newer data can exist before the next snapshot.
"""

import hashlib
import json
import logging
from collections import defaultdict
from datetime import date, datetime, timedelta

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from rest_framework import status

from analytics import greeks, metrics
from analytics.models import ChainQuote, ChainSnapshot
from analytics.snapshots import IST, chain_snapshot_take, expiry_moment, years_to_expiry
from thor import coordination
from thor.errors import ApplicationError

logger = logging.getLogger("analytics.selectors")

INTERVAL_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
# Bucketing days at midnight in India, where the market's day is.
IST_OFFSET_SECONDS = 19800
MAX_SERIES_POINTS = 50_000
SIGNAL_POINTS = 60
SERIES_METRICS = {
    "iv": "iv",
    "oi": "oi",
    "volume": "volume",
    "premium": "last_price",
    "bid": "bid",
    "ask": "ask",
    "delta": "delta",
    "gamma": "gamma",
    "theta": "theta",
    "vega": "vega",
    "rho": "rho",
}
REFRESH_LOCK_SECONDS = 30


class UnknownChoice(ApplicationError):
    def __init__(self, field: str, value: str, choices: list[str]):
        listing = ", ".join(choices) or "none yet"
        super().__init__(
            f"Unknown {field} {value!r}. Valid choices: {listing}.",
            code="not_found",
            status_code=status.HTTP_404_NOT_FOUND,
            errors={field: [f"Valid choices: {listing}."]},
        )


class ChainUnavailable(ApplicationError):
    def __init__(self, underlying: str):
        super().__init__(
            f"No snapshot of the {underlying} chain yet and none could be taken; try again shortly.",
            code="market_data_unavailable",
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )


# --- freshness and caching ------------------------------------------------------------------


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


def _latest(underlying: str) -> datetime | None:
    return (
        ChainSnapshot.objects.filter(underlying=underlying)
        .order_by("-taken_at")
        .values_list("taken_at", flat=True)
        .first()
    )


def _refreshed(underlying: str) -> datetime | None:
    """A new snapshot taken now, or None when it cannot be (then nobody retries for a snapshot period)."""
    failed_key = f"thor:analytics:refresh-failed:{underlying}"
    if cache.get(failed_key):
        return None
    period = settings.THOR_ANALYTICS_SNAPSHOT_SECONDS
    with coordination.single_flight(f"thor:analytics:refresh:{underlying}", timeout=REFRESH_LOCK_SECONDS, wait=10):
        latest = _latest(underlying)
        if latest and timezone.now() - latest <= timedelta(seconds=period):
            return latest  # someone else refreshed while this reader waited
        try:
            summary = chain_snapshot_take(underlying=underlying)
        except Exception as error:
            logger.warning("Refreshing the %s chain failed: %s", underlying, type(error).__name__)
            summary = None
        if summary is None or not summary.rows:
            cache.set(failed_key, True, period)
            return None
        return summary.taken_at


def chain_as_of(underlying: str) -> tuple[datetime, str]:
    """When the chain being served was taken, and whether that is `live` or `stale`."""
    latest = _latest(underlying)
    max_age = timedelta(seconds=2 * settings.THOR_ANALYTICS_SNAPSHOT_SECONDS)
    if latest and timezone.now() - latest <= max_age:
        return latest, "live"
    refreshed = _refreshed(underlying)
    if refreshed:
        return refreshed, "live"
    if latest:
        return latest, "stale"
    raise ChainUnavailable(underlying)


def _cached(name: str, params: dict, compute) -> dict:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:32]
    key = f"thor:analytics:{name}:{digest}"
    body = cache.get(key)
    if body is not None:
        return {**body, "source": "cache"} if body["source"] == "live" else body
    body = compute()
    cache.set(key, body, settings.THOR_ANALYTICS_SNAPSHOT_SECONDS)
    return body


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


def _days_to(expiry: date, at: datetime) -> float:
    return max((expiry_moment(expiry) - at).total_seconds() / 86400, 0.0)


# --- strike distribution ----------------------------------------------------------------------

QUOTE_FIELDS = (
    "tradingsymbol",
    "instrument_token",
    "option_type",
    "strike",
    "strike_offset",
    "last_price",
    "bid",
    "ask",
    "bid_quantity",
    "ask_quantity",
    "depth_bid_quantity",
    "depth_ask_quantity",
    "volume",
    "oi",
    "iv",
    "delta",
    "gamma",
    "theta",
    "vega",
    "rho",
)


def strike_distribution_get(*, underlying: str, expiry: date | None, option_side: str, strikes_around_atm: int) -> dict:
    _require_underlying(underlying)
    as_of, source = chain_as_of(underlying)
    expiry = _pick_expiry(expiry, _expiries_at(underlying, as_of))
    params = {"u": underlying, "e": expiry, "s": option_side, "n": strikes_around_atm, "at": as_of}
    return _cached(
        "strike-distribution",
        params,
        lambda: _strike_distribution(underlying, expiry, option_side, strikes_around_atm, as_of, source),
    )


def _opening_oi(underlying: str, expiry: date, as_of: datetime) -> dict[int, int]:
    """OI of each contract at the day's first snapshot (India's day): what `oi_change` is measured from."""
    local = as_of.astimezone(IST)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    first = (
        ChainSnapshot.objects.filter(underlying=underlying, expiry=expiry, taken_at__gte=day_start, taken_at__lte=as_of)
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


def _strike_distribution(underlying, expiry, option_side, strikes_around_atm, as_of, source) -> dict:
    snapshot = ChainSnapshot.objects.get(underlying=underlying, expiry=expiry, taken_at=as_of)
    rate = settings.THOR_ANALYTICS_RISK_FREE_RATE
    quotes = list(
        ChainQuote.objects.filter(underlying=underlying, expiry=expiry, taken_at=as_of, option_type__in=["CE", "PE"])
        .order_by("strike", "option_type")
        .values(*QUOTE_FIELDS)
    )
    opening = _opening_oi(underlying, expiry, as_of)
    by_strike: dict[float, dict[str, dict]] = defaultdict(dict)
    for quote in quotes:
        by_strike[quote["strike"]][quote["option_type"]] = quote
    at_the_money = by_strike.get(snapshot.atm_strike, {})
    atm_ivs = [side["iv"] for side in at_the_money.values() if side["iv"] is not None]
    atm_iv = float(np.mean(atm_ivs)) if atm_ivs else None
    years = years_to_expiry(expiry, as_of)
    if quotes and atm_iv is not None:
        model = greeks.black76_price(
            snapshot.forward,
            np.array([quote["strike"] for quote in quotes]),
            years,
            atm_iv,
            rate,
            np.array([quote["option_type"] == "CE" for quote in quotes]),
        )
        for quote, price in zip(quotes, np.atleast_1d(model), strict=True):
            quote["model_price"] = float(price)
    calls = [quote for quote in quotes if quote["option_type"] == "CE"]
    puts = [quote for quote in quotes if quote["option_type"] == "PE"]
    call_oi, put_oi = sum(q["oi"] for q in calls), sum(q["oi"] for q in puts)
    strikes = sorted(by_strike)
    gamma_by_strike = {
        strike: metrics.gamma_exposure(
            by_strike[strike].get("CE", {}).get("gamma"),
            by_strike[strike].get("CE", {}).get("oi", 0),
            by_strike[strike].get("PE", {}).get("gamma"),
            by_strike[strike].get("PE", {}).get("oi", 0),
            snapshot.forward,
        )
        for strike in strikes
    }
    sides = {"call": ["CE"], "put": ["PE"], "both": ["CE", "PE"]}[option_side]
    rows = []
    for strike in strikes:
        sided = by_strike[strike]
        offset = next(iter(sided.values()))["strike_offset"]
        if abs(offset) > strikes_around_atm:
            continue
        rows.append(
            {
                "strike": strike,
                "strike_offset": offset,
                "gamma_exposure": gamma_by_strike[strike],
                "call": _side(sided.get("CE"), opening) if "CE" in sides else None,
                "put": _side(sided.get("PE"), opening) if "PE" in sides else None,
            }
        )
    return {
        "underlying": underlying,
        "expiry": expiry,
        "as_of": as_of,
        "source": source,
        "option_side": option_side,
        "strikes_around_atm": strikes_around_atm,
        "chain": {
            "atm_strike": snapshot.atm_strike,
            "forward": snapshot.forward,
            "spot": snapshot.spot,
            "days_to_expiry": _days_to(expiry, as_of),
            "pcr_oi": metrics.ratio(put_oi, call_oi),
            "pcr_volume": metrics.ratio(sum(q["volume"] for q in puts), sum(q["volume"] for q in calls)),
            "max_pain_strike": metrics.max_pain_strike(
                strikes,
                [by_strike[s].get("CE", {}).get("oi", 0) for s in strikes],
                [by_strike[s].get("PE", {}).get("oi", 0) for s in strikes],
            ),
            "atm_iv": atm_iv,
            "skew_25_delta": metrics.skew_25_delta(
                [q["delta"] for q in calls],
                [q["iv"] for q in calls],
                [q["delta"] for q in puts],
                [q["iv"] for q in puts],
            ),
            "net_gamma_exposure": sum(gamma_by_strike.values()),
            "call_oi": call_oi,
            "put_oi": put_oi,
        },
        "strikes": rows,
    }


def _side(quote: dict | None, opening: dict[int, int]) -> dict | None:
    if quote is None:
        return None
    depth = metrics.depth_metrics(
        quote["bid"],
        quote["ask"],
        quote["bid_quantity"],
        quote["ask_quantity"],
        quote["depth_bid_quantity"],
        quote["depth_ask_quantity"],
    )
    model_price = quote.get("model_price")
    premium = quote["last_price"] - model_price if model_price is not None else None
    return {
        **{name: quote[name] for name in QUOTE_FIELDS if name not in {"option_type", "strike", "strike_offset"}},
        "oi_change": quote["oi"] - opening.get(quote["instrument_token"], quote["oi"]),
        "model_price": model_price,
        "premium": premium,
        "premium_pct": premium / model_price * 100 if premium is not None and model_price else None,
        "depth": {
            "spread": depth.spread,
            "spread_bps": depth.spread_bps,
            "microprice": depth.microprice,
            "bid_quantity_5": quote["depth_bid_quantity"],
            "ask_quantity_5": quote["depth_ask_quantity"],
            "liquidity_score": depth.liquidity_score,
        },
    }


# --- moneyness series -------------------------------------------------------------------------


def strike_offset_for(moneyness: str, option_side: str) -> int:
    """Strikes from the money: ITM calls sit below the ATM strike, ITM puts above it."""
    if moneyness == "ATM":
        return 0
    steps = int(moneyness[3:])
    below = -steps if moneyness.startswith("ITM") else steps
    return below if option_side == "call" else -below


def _bucketed(rows, interval_seconds: int):
    """The last row of each interval (intervals of a day start at midnight in India)."""
    if interval_seconds == 60:
        return rows
    shift = IST_OFFSET_SECONDS if interval_seconds >= 86400 else 0
    last_of_bucket = {}
    for row in rows:
        last_of_bucket[(int(row[0].timestamp()) + shift) // interval_seconds] = row
    return list(last_of_bucket.values())


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC, as PostgreSQL's JSON writes a timestamp in Django's UTC sessions."""
    return moment.isoformat()


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
    _require_underlying(underlying)
    as_of, source = chain_as_of(underlying)
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
    }

    def compute() -> dict:
        series = {
            "underlying": underlying,
            "expiry": expiry,
            "option_type": "CE" if option_side == "call" else "PE",
            "strike_offset": strike_offset_for(moneyness, option_side),
            "start": start,
            "end": end,
        }
        seconds = INTERVAL_SECONDS[interval]
        points = points_json = None
        if connection.vendor == "postgresql":
            points_json, count = _series_json(series, SERIES_METRICS[metric], seconds)
        else:
            points = _series_points(series, SERIES_METRICS[metric], seconds)
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
            "source": source,
            "count": count,
            "points": points,
            "points_json": points_json,
        }

    return _cached("moneyness-series", params, compute)


def _series_points(series: dict, column: str, seconds: int) -> list[dict]:
    rows = (
        ChainQuote.objects.filter(
            underlying=series["underlying"],
            expiry=series["expiry"],
            option_type=series["option_type"],
            strike_offset=series["strike_offset"],
            taken_at__gte=series["start"],
            taken_at__lt=series["end"],
        )
        .order_by("taken_at")
        .values_list("taken_at", "strike", column)
    )
    return [
        {"t": _iso(t), "strike": f"{strike:.4f}", "value": value} for t, strike, value in _bucketed(list(rows), seconds)
    ]


# PostgreSQL builds the points' JSON itself from an index-only scan: a month of minutes is 43,200 points, and
# parsing that many timestamps into Python and serializing them again costs most of a second. The same last
# value per interval as _bucketed, the same text as _series_points.
SERIES_JSON_SQL = """
SELECT coalesce(json_agg(json_build_object(
           't', taken_at,
           'strike', strike::numeric(20, 4)::text,
           'value', value) ORDER BY taken_at), '[]'::json)::text,
       count(*)
FROM (
    SELECT DISTINCT ON (floor((extract(epoch FROM taken_at) + %(shift)s) / %(seconds)s))
           taken_at, strike, {column} AS value
    FROM analytics_chainquote
    WHERE underlying = %(underlying)s AND expiry = %(expiry)s AND option_type = %(option_type)s
      AND strike_offset = %(strike_offset)s AND taken_at >= %(start)s AND taken_at < %(end)s
    ORDER BY floor((extract(epoch FROM taken_at) + %(shift)s) / %(seconds)s), taken_at DESC
) AS last_of_interval
"""
SERIES_JSON_1M_SQL = """
SELECT coalesce(json_agg(json_build_object(
           't', taken_at,
           'strike', strike::numeric(20, 4)::text,
           'value', value) ORDER BY taken_at), '[]'::json)::text,
       count(*)
FROM (
    SELECT taken_at, strike, {column} AS value
    FROM analytics_chainquote
    WHERE underlying = %(underlying)s AND expiry = %(expiry)s AND option_type = %(option_type)s
      AND strike_offset = %(strike_offset)s AND taken_at >= %(start)s AND taken_at < %(end)s
) AS minutes
"""


def _series_json(series: dict, column: str, seconds: int) -> tuple[str, int]:
    # `column` comes from SERIES_METRICS (a fixed list), never from the request.
    assert column in SERIES_METRICS.values()
    sql = SERIES_JSON_1M_SQL if seconds == 60 else SERIES_JSON_SQL
    params = {**series, "seconds": seconds, "shift": IST_OFFSET_SECONDS if seconds >= 86400 else 0}
    with connection.cursor() as cursor:
        cursor.execute(sql.format(column=column), params)
        text, count = cursor.fetchone()
    return text, count


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
    as_of, source = chain_as_of(symbol)
    thresholds = {
        "price_change_pct": settings.THOR_ANALYTICS_SIGNAL_PRICE_PCT,
        "oi_change_pct": settings.THOR_ANALYTICS_SIGNAL_OI_PCT,
    }

    def compute() -> dict:
        futures = _futures_at(symbol, as_of)
        near = futures[0] if futures else None
        points = []
        if near:
            seconds = INTERVAL_SECONDS[interval]
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
            points = metrics.position_signals(
                _bucketed(list(rows), seconds),
                price_threshold=thresholds["price_change_pct"],
                oi_threshold=thresholds["oi_change_pct"],
            )
        return {
            "symbol": symbol,
            "expiry": near["expiry"] if near else None,
            "tradingsymbol": near["tradingsymbol"] if near else None,
            "interval": interval,
            "as_of": as_of,
            "source": source,
            "thresholds": thresholds,
            "signal": points[-1].signal if points else metrics.NEUTRAL,
            "points": [point.__dict__ for point in points],
        }

    return _cached("position-signals", {"s": symbol, "i": interval, "at": as_of}, compute)


def _rollover_pct(futures: list[dict]) -> float | None:
    total = sum(item["oi"] for item in futures)
    return sum(item["oi"] for item in futures[1:]) / total * 100 if total and len(futures) > 1 else None


def rollover_metrics_get(*, symbol: str) -> dict:
    _require_futures(symbol)
    as_of, source = chain_as_of(symbol)

    def compute() -> dict:
        futures = _futures_at(symbol, as_of)
        spot = (
            ChainSnapshot.objects.filter(underlying=symbol, taken_at=as_of)
            .order_by("expiry")
            .values_list("spot", flat=True)
            .first()
        )
        total_oi = sum(item["oi"] for item in futures)
        contracts = []
        for item in futures:
            days = _days_to(item["expiry"], as_of)
            basis = item["last_price"] - spot if spot else None
            contracts.append(
                {
                    **item,
                    "days_to_expiry": days,
                    "oi_share_pct": item["oi"] / total_oi * 100 if total_oi else None,
                    "basis": basis,
                    "annualised_basis_pct": basis / spot * 365 / max(days, 0.5) * 100 if basis is not None else None,
                }
            )
        rollover_pct = _rollover_pct(futures)
        near_days = contracts[0]["days_to_expiry"] if contracts else 0.0
        cost_pct = annualised_cost = None
        if len(futures) > 1 and futures[0]["last_price"]:
            near, following = futures[0], futures[1]
            cost_pct = (following["last_price"] - near["last_price"]) / near["last_price"] * 100
            gap_days = max((following["expiry"] - near["expiry"]).days, 1)
            annualised_cost = cost_pct * 365 / gap_days
        day_start = as_of.astimezone(IST).replace(hour=0, minute=0, second=0, microsecond=0)
        opening_at = (
            ChainQuote.objects.filter(underlying=symbol, option_type="FUT", taken_at__gte=day_start)
            .order_by("taken_at")
            .values_list("taken_at", flat=True)
            .first()
        )
        opening_pct = _rollover_pct(_futures_at(symbol, opening_at)) if opening_at else None
        pressure, pressure_label = metrics.rollover_pressure(rollover_pct, near_days)
        return {
            "symbol": symbol,
            "as_of": as_of,
            "source": source,
            "spot": spot,
            "contracts": contracts,
            "rollover_pct": rollover_pct,
            "rollover_pct_change": rollover_pct - opening_pct
            if rollover_pct is not None and opening_pct is not None
            else None,
            "rollover_cost_pct": cost_pct,
            "rollover_cost_annualised_pct": annualised_cost,
            "days_to_expiry": near_days,
            "rollover_pressure": pressure,
            "rollover_pressure_label": pressure_label,
        }

    return _cached("rollover-metrics", {"s": symbol, "at": as_of}, compute)
