"""A metric over time at a fixed moneyness: the last stored value of each interval, read by PostgreSQL or Python.

Read only. A series is keyed by its strike offset (strikes from the ATM strike at each snapshot), so the
moneyness is re-evaluated at every snapshot by the covering index `chain_quote_series`.
"""

from datetime import datetime

from django.db import connection

from analytics.models import ChainQuote

INTERVAL_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
# Bucketing days at midnight in India, where the market's day is.
IST_OFFSET_SECONDS = 19800
MAX_SERIES_POINTS = 50_000
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


def strike_offset_for(moneyness: str, option_side: str) -> int:
    """Strikes from the money: ITM calls sit below the ATM strike, ITM puts above it."""
    if moneyness == "ATM":
        return 0
    steps = int(moneyness[3:])
    below = -steps if moneyness.startswith("ITM") else steps
    return below if option_side == "call" else -below


def bucketed(rows, interval_seconds: int):
    """The last row of each interval (intervals of a day start at midnight in India); rows start with a time."""
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


def series_points(series: dict, column: str, seconds: int) -> list[dict]:
    """The points in Python (any database): {t, strike, value} of the last row of each interval."""
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
        {"t": _iso(t), "strike": f"{strike:.4f}", "value": value} for t, strike, value in bucketed(list(rows), seconds)
    ]


# PostgreSQL builds the points' JSON itself from an index-only scan: a month of minutes is 43,200 points, and
# parsing that many timestamps into Python and serializing them again costs most of a second. The same last
# value per interval as bucketed(), the same text as series_points().
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


def series_json(series: dict, column: str, seconds: int) -> tuple[str, int]:
    """The points as JSON text built by PostgreSQL, and how many."""
    if column not in SERIES_METRICS.values():
        # `column` is spliced into the SQL: only the fixed list's names, never a request's text.
        raise ValueError(f"not a series column: {column!r}")
    sql = SERIES_JSON_1M_SQL if seconds == 60 else SERIES_JSON_SQL
    params = {**series, "seconds": seconds, "shift": IST_OFFSET_SECONDS if seconds >= 86400 else 0}
    with connection.cursor() as cursor:
        cursor.execute(sql.format(column=column), params)
        text, count = cursor.fetchone()
    return text, count


def uses_database_json() -> bool:
    return connection.vendor == "postgresql"
