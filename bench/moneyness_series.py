"""Benchmark: GET /api/fo/moneyness-series over a 30-day window of one-minute snapshots (target: under 300 ms).

    .venv/bin/python bench/moneyness_series.py [--days 30 --minutes-per-day 1440 --strikes 20 --repeat 7]

Its own world: PostgreSQL database `thor_bench_moneyness` on 127.0.0.1:5432, dropped, created and
migrated on every run, filled with generated snapshots ending now: NIFTY and BANKNIFTY, two expiries
each, `--strikes` each side of the money, calls and puts, one snapshot a minute (by default round
the clock: 43,200 snapshots of 328 rows, 14 million quote rows, 6 GB with indexes: the series' worst case), with the ATM strike
wandering so the moneyness really is re-evaluated at each snapshot. No Redis: the local-memory cache,
cleared before each request, so every measured request reads the database.

The request goes through Django's whole stack in process (URL routing, JWT authentication, validation,
the query, serialization, JSON rendering) for the full window at 1m (43,200 points) and at 5m. The
baseline, measured in the same run on the same table: a trivial indexed query (one row of the same
series by its exact time), and the series' query alone without the HTTP stack.
"""

import argparse
import importlib
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATABASE_NAME = "thor_bench_moneyness"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_MS = 300.0


def _recreate_database() -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def _setup_django() -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
    os.environ["REDIS_URL"] = ""
    os.environ["CELERY_BROKER_URL"] = ""
    os.environ["THOR_EMBEDDED_SCHEDULER"] = "false"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thor.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["*"]
    # Generated data only: a reader must never try to refresh it from a broker.
    settings.THOR_ANALYTICS_SNAPSHOT_SECONDS = 10**6


# Each expiry's quote rows: one per (snapshot, side, strike offset), its strike following a wandering ATM.
GENERATE_QUOTES = """
INSERT INTO analytics_chainquote (
    taken_at, underlying, expiry, option_type, strike, strike_offset, instrument_token, tradingsymbol,
    last_price, volume, oi, bid, ask, bid_quantity, ask_quantity, depth_bid_quantity, depth_ask_quantity,
    iv, iv_reason, delta, gamma, theta, vega, rho
)
SELECT
    s.taken_at, %(underlying)s, %(expiry)s, side.kind,
    s.atm + o.k * %(step)s, o.k, 1000000 + o.k, %(underlying)s || side.kind || o.k,
    100 + o.k, 1000 + s.n, 50000 + s.n %% 977, 99.95 + o.k, 100.05 + o.k, 750, 750, 3750, 3750,
    0.12 + 0.002 * o.k * o.k + 0.01 * sin(s.n / 500.0), 0, 0.5, 0.001, -5.0, 10.0, 1.0
FROM (
    SELECT n, %(end)s - n * interval '1 minute' AS taken_at,
           %(centre)s + %(step)s * round(4 * sin(n / 700.0)) AS atm
    FROM generate_series(0, %(snapshots)s - 1) AS n
) AS s
CROSS JOIN generate_series(-%(strikes)s, %(strikes)s) AS o(k)
CROSS JOIN (VALUES ('CE'), ('PE')) AS side(kind)
"""
GENERATE_SNAPSHOTS = """
INSERT INTO analytics_chainsnapshot (underlying, expiry, taken_at, spot, forward, atm_strike, years_to_expiry)
SELECT %(underlying)s, %(expiry)s, %(end)s - n * interval '1 minute', %(centre)s, %(centre)s,
       %(centre)s + %(step)s * round(4 * sin(n / 700.0)), 0.05
FROM generate_series(0, %(snapshots)s - 1) AS n
"""


def _generate(days: int, minutes_per_day: int, strikes: int):
    from django.db import connection
    from django.utils import timezone

    from analytics.models import ChainQuote

    _brin = importlib.import_module("analytics.migrations.0002_chain_quote_time_brin")

    # Loading is faster with the indexes built afterwards (sorted builds); they are the migrations' own.
    with connection.schema_editor() as editor:
        for index in ChainQuote._meta.indexes:
            editor.remove_index(ChainQuote, index)
    with connection.cursor() as cursor:
        cursor.execute(_brin.DROP)

    # Snapshots a minute apart ending now; with fewer minutes a day, the day's minutes are consecutive.
    end = timezone.now().replace(second=0, microsecond=0)
    snapshots = days * minutes_per_day
    today = timezone.localdate()
    expiries = [today + timedelta(days=7), today + timedelta(days=35)]
    with connection.cursor() as cursor:
        for underlying, centre, step in (("NIFTY", 24500, 50), ("BANKNIFTY", 52000, 100)):
            for expiry in expiries:
                params = {
                    "underlying": underlying,
                    "expiry": expiry,
                    "end": end,
                    "snapshots": snapshots,
                    "strikes": strikes,
                    "centre": centre,
                    "step": step,
                }
                cursor.execute(GENERATE_QUOTES, params)
                cursor.execute(GENERATE_SNAPSHOTS, params)
    with connection.schema_editor() as editor:
        for index in ChainQuote._meta.indexes:
            editor.add_index(ChainQuote, index)
    with connection.cursor() as cursor:
        cursor.execute(_brin.CREATE)
        # What autovacuum does to an insert-only table soon after: sets the visibility map for index-only scans.
        cursor.execute("VACUUM ANALYZE analytics_chainquote")
        cursor.execute("VACUUM ANALYZE analytics_chainsnapshot")
        cursor.execute(
            "SELECT count(*), pg_size_pretty(pg_total_relation_size('analytics_chainquote')) FROM analytics_chainquote"
        )
        rows, size = cursor.fetchone()
    return end, expiries[0], rows, size


def _existing():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT max(taken_at), min(expiry) FROM analytics_chainsnapshot")
        end, expiry = cursor.fetchone()
        cursor.execute(
            "SELECT count(*), pg_size_pretty(pg_total_relation_size('analytics_chainquote')) FROM analytics_chainquote"
        )
        rows, size = cursor.fetchone()
    return end, expiry, rows, size


def _timed(function, repeat: int) -> list[float]:
    from django.core.cache import cache

    function()  # warm-up: connection, plans, imports
    figures = []
    for _ in range(repeat):
        cache.clear()
        started = time.perf_counter()
        function()
        figures.append((time.perf_counter() - started) * 1000)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--minutes-per-day", type=int, default=1440)
    parser.add_argument("--strikes", type=int, default=20, help="strikes each side of the money")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="measure the data a previous run generated")
    args = parser.parse_args()

    if not args.reuse:
        _recreate_database()
    _setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    if args.reuse:
        end, expiry, rows, size = _existing()
    else:
        end, expiry, rows, size = _generate(args.days, args.minutes_per_day, args.strikes)
    print(
        f"generated {rows:,} quote rows ({size}) in {time.perf_counter() - started:.0f} s, window ending {end:%Y-%m-%d %H:%M} UTC"
    )

    from rest_framework.test import APIClient

    from analytics.models import ChainQuote
    from identity.models import Tenant, User
    from identity.tokens import token_pair_for

    tenant, _ = Tenant.objects.get_or_create(
        slug="bench", defaults={"name": "Bench", "allowed_origins": ["http://localhost:5173"]}
    )
    user = User.objects.filter(email="bench@thor.local").first() or User.objects.create_user(
        "bench@thor.local", "bench-passphrase-42", tenant=tenant
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_for(user)['access']}")
    start = end - timedelta(days=args.days)

    def series(interval: str):
        def call():
            response = client.get(
                "/api/fo/moneyness-series",
                {
                    "underlying": "NIFTY",
                    "expiry": expiry.isoformat(),
                    "moneyness": "OTM3",
                    "metric": "iv",
                    "from": start.isoformat(),
                    "to": (end + timedelta(minutes=1)).isoformat(),
                    "interval": interval,
                },
            )
            assert response.status_code == 200, response.content[:300]
            call.response = response

        return call

    one_row_at = end - timedelta(days=args.days // 2)

    def trivial_query():
        list(
            ChainQuote.objects.filter(
                underlying="NIFTY", expiry=expiry, option_type="CE", strike_offset=3, taken_at=one_row_at
            ).values_list("iv", flat=True)
        )

    def series_query_only():
        list(
            ChainQuote.objects.filter(
                underlying="NIFTY",
                expiry=expiry,
                option_type="CE",
                strike_offset=3,
                taken_at__gte=start,
                taken_at__lt=end + timedelta(minutes=1),
            )
            .order_by("taken_at")
            .values_list("taken_at", "strike", "iv")
        )

    results = []
    for name, function in (
        ("baseline: one indexed row", trivial_query),
        ("ORM query, rows to Python", series_query_only),
        ("GET moneyness-series 1m", series("1m")),
        ("GET moneyness-series 5m", series("5m")),
    ):
        figures = _timed(function, args.repeat)
        # Read outside the timing: parsing the answer is the client's work, not the endpoint's.
        points = function.response.json()["count"] if hasattr(function, "response") else None
        results.append((name, statistics.median(figures), min(figures), points))

    print(f"\n{'measurement':<28} {'median ms':>10} {'best ms':>9} {'points':>8}")
    for name, median, best, points in results:
        print(f"{name:<28} {median:>10.1f} {best:>9.1f} {points if points is not None else '':>8}")
    headline = results[2][1]
    verdict = "PASS" if headline < TARGET_MS else "FAIL"
    print(
        f"\n{verdict}: {args.days}-day window at 1m in {headline:.0f} ms (target < {TARGET_MS:.0f} ms), "
        f"{headline / results[0][1]:.0f}x the one-row baseline"
    )


if __name__ == "__main__":
    main()
