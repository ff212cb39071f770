"""Schwab token refresh at scale: many connections whose access tokens all expire in one window.

Run: .venv/bin/python bench/schwab_refresh.py [--connections 10000 --window 120 --workers 2]

Time is compressed by one factor F = 1800 s / window: the tokens expire spread evenly over
`window` seconds instead of Schwab's 30 minutes, and the beat interval (60 s), the refresh lead
(300 s) and the per-app token budget (THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE a minute) are scaled
by the same factor, so the schedule Thor keeps is the production one, run faster. Real Celery
workers (prefork, one process each) and a real beat run on Redis as the broker; the broker
sandbox stands in for Schwab and counts the refresh calls it gets for each login.

Figures: refreshes per second with the workers (over the run, and the best second), how many
connections expired before being refreshed (target 0), and the sandbox's refresh calls per
connection (target exactly 1 each). The baseline beside them, measured in the same run: one
process refreshing a sample of connections one after the other, without Celery.
A measurement, not a test: it exits 0 whether the targets are met or not. Bounded: it stops at
the end of the window plus the lead and a grace period, refreshed or not.

Its own world: PostgreSQL database `thor_bench_schwab` (dropped and migrated on every run) and
Redis DB 8 as cache and Celery broker (flushed on every run).
"""

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from harness import (  # noqa: E402
    PYTHON,
    Processes,
    bench_env,
    exit_cleanly_on_sigterm,
    free_port,
    reset_storage,
)
from load import verdict  # noqa: E402

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_NAME = "thor_bench_schwab"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/8"
CLIENT_ID, CLIENT_SECRET = "thor_bench_schwab_client", "thor_bench_schwab_secret"
REDIRECT_URI = "http://localhost:5173/schwab/callback"

# Production's schedule, which the compression factor scales.
ACCESS_LIFETIME_SECONDS = 1800.0
BEAT_EVERY_SECONDS = 60.0
LEAD_SECONDS = 300.0
TOKEN_BUDGET_PER_MINUTE = 600
BASELINE_SAMPLE = 300
GRACE_SECONDS = 20.0


def world_env(*, factor: float, sandbox_url: str) -> dict:
    return bench_env(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        settings_module="thor.settings",
        CELERY_BROKER_URL=REDIS_URL,
        THOR_SCHWAB_API_BASE=sandbox_url,
        THOR_SCHWAB_AUTH_BASE=sandbox_url,
        THOR_SANDBOX_SCHWAB_CLIENT_ID=CLIENT_ID,
        THOR_SANDBOX_SCHWAB_CLIENT_SECRET=CLIENT_SECRET,
        THOR_BROKER_REFRESH_EVERY_SECONDS=str(BEAT_EVERY_SECONDS / factor),
        THOR_BROKER_REFRESH_LEAD_SECONDS=str(LEAD_SECONDS / factor),
        THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE=str(int(TOKEN_BUDGET_PER_MINUTE * factor)),
    )


def django_setup(env: dict) -> None:
    """This process talks to the same database as the workers, for seeding and for reading the outcome."""
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "LOG_LEVEL", "DEBUG"):
        os.environ[name] = env[name]
    for name, value in env.items():
        if name.startswith("THOR_"):
            os.environ[name] = value
    import django

    django.setup()


def seed(sandbox_url: str, count: int, *, spread_seconds: float, offset_seconds: float, label: str):
    """`count` users, each with an active Schwab connection whose access token expires at an even
    step across `spread_seconds`, starting `offset_seconds` from now. Returns {id: expires_at}."""
    from django.utils import timezone

    from brokers.models import BrokerApp, BrokerConnection, BrokerKind
    from identity.models import Tenant, User

    tenant, _ = Tenant.objects.get_or_create(slug="bench-schwab", defaults={"name": "Bench Schwab"})
    app, _ = BrokerApp.objects.get_or_create(
        tenant=tenant,
        owner=None,
        kind=BrokerKind.SCHWAB,
        api_key=CLIENT_ID,
        defaults={"api_secret": CLIENT_SECRET, "redirect_uri": REDIRECT_URI, "name": "Bench Schwab"},
    )
    # The sandbox's own expiry is after Thor's, so only Thor's schedule decides when a refresh is needed.
    response = requests.post(
        f"{sandbox_url}/_sandbox/schwab/grants",
        json={"client_id": CLIENT_ID, "count": count, "access_seconds": offset_seconds + spread_seconds + 3600},
        timeout=300,
    )
    response.raise_for_status()
    grants = response.json()
    users = User.objects.bulk_create(
        [User(email=f"{label}-{index}@bench.test", tenant=tenant, password="!") for index in range(count)],
        batch_size=2000,
    )
    now = timezone.now()
    step = spread_seconds / max(1, count)
    connections = BrokerConnection.objects.bulk_create(
        [
            BrokerConnection(
                user=user,
                app=app,
                status=BrokerConnection.Status.ACTIVE,
                broker_user_id=grant["customer_id"],
                access_token=grant["access_token"],
                refresh_token=grant["refresh_token"],
                access_expires_at=now + timedelta(seconds=offset_seconds + index * step),
                refresh_expires_at=now + timedelta(days=7),
            )
            for index, (user, grant) in enumerate(zip(users, grants, strict=True))
        ],
        batch_size=2000,
    )
    return {connection.pk: connection.access_expires_at for connection in connections}, grants


def baseline(sample: dict) -> float:
    """Refreshes per second of one process refreshing due connections one after the other."""
    from brokers.services.tokens import connection_tokens_refresh

    started = time.perf_counter()
    for connection_id in sample:
        outcome = connection_tokens_refresh(connection_id=connection_id, force=True)
        assert outcome.action == "refreshed", outcome
    return len(sample) / (time.perf_counter() - started)


def outcome(expiries: dict) -> tuple[int, int, int, list]:
    """(refreshed, expired before being refreshed, not refreshed at all, refresh moments)."""
    from django.db import close_old_connections

    from brokers.models import BrokerConnection

    close_old_connections()
    rows = BrokerConnection.objects.filter(pk__in=list(expiries)).values_list(
        "pk", "access_expires_at", "updated_at", "status"
    )
    refreshed = late = missing = 0
    moments = []
    for pk, expires_at, updated_at, status in rows.iterator(chunk_size=5000):
        if expires_at > expiries[pk] and status == "active":
            refreshed += 1
            moments.append(updated_at)
            late += updated_at > expiries[pk]
        else:
            missing += 1
    return refreshed, late, missing, moments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=120.0, help="seconds standing for Schwab's 30 minutes")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    factor = ACCESS_LIFETIME_SECONDS / args.window
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = world_env(factor=factor, sandbox_url=sandbox_url)
    lead = LEAD_SECONDS / factor

    with Processes() as processes:
        print(f"Setting up: database {DATABASE_NAME}, Redis DB 8, the sandbox; logs in {processes.log_dir}")
        reset_storage(env)
        django_setup(env)
        sandbox = processes.start(
            "sandbox", [PYTHON, "manage.py", "run_broker_sandbox", "--port", str(sandbox_port)], env
        )
        processes.wait_ready(sandbox, f"{sandbox_url}/_sandbox/stats")

        print(f"Baseline: one process, no Celery, {BASELINE_SAMPLE} refreshes one after the other")
        sample, _ = seed(sandbox_url, BASELINE_SAMPLE, spread_seconds=0, offset_seconds=3600, label="baseline")
        baseline_rate = baseline(sample)
        sample_grants = set(requests.get(f"{sandbox_url}/_sandbox/schwab/refreshes", timeout=30).json()["by_grant"])

        print(f"Seeding {args.connections} connections expiring over {args.window:.0f} s (x{factor:.0f} time)")
        # The first expiries come one lead after the workers start, as on a day when they are already running.
        expiries, grants = seed(
            sandbox_url, args.connections, spread_seconds=args.window, offset_seconds=lead + 5, label="load"
        )
        load_grants = {grant["grant_id"] for grant in grants}
        beat_schedule = Path(tempfile.mkdtemp(prefix="thor-beat-")) / "schedule"
        celery = [PYTHON, "-m", "celery", "-A", "thor"]
        for index in range(args.workers):
            processes.start(
                f"worker-{index + 1}",
                [
                    *celery,
                    "worker",
                    "--pool",
                    "prefork",
                    "--concurrency",
                    "1",
                    "-n",
                    f"bench-{index + 1}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "warning",
                ],
                env,
            )
        processes.start("beat", [*celery, "beat", "-l", "warning", "--schedule", str(beat_schedule)], env)
        started = time.monotonic()
        deadline = started + lead + 5 + args.window + GRACE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(5)
            refreshed, late, missing, _ = outcome(expiries)
            print(f"  {time.monotonic() - started:5.0f} s: {refreshed} refreshed, {late} late")
            if missing == 0:
                break
        refreshed, late, missing, moments = outcome(expiries)
        counts = requests.get(f"{sandbox_url}/_sandbox/schwab/refreshes", timeout=30).json()["by_grant"]

    calls = Counter(counts.get(grant_id, 0) for grant_id in load_grants)
    moments.sort()
    span = (moments[-1] - moments[0]).total_seconds() if len(moments) > 1 else 0.0
    rate = refreshed / span if span else 0.0
    per_second = Counter(moment.replace(microsecond=0) for moment in moments)
    best = max(per_second.values(), default=0)
    exactly_once = calls.get(1, 0)
    print()
    print(
        f"{args.connections} Schwab (sandbox) connections, access tokens expiring evenly over {args.window:.0f} s "
        f"standing for 30 min (time x{factor:.0f}: beat every {BEAT_EVERY_SECONDS / factor:.1f} s, lead "
        f"{lead:.1f} s, token budget {int(TOKEN_BUDGET_PER_MINUTE * factor)}/min)."
    )
    print(f"Celery: {args.workers} workers (prefork, concurrency 1) + beat, Redis broker; PostgreSQL.")
    print(
        f"Machine: {os.cpu_count()} cores shared by the workers, beat, PostgreSQL, Redis, the sandbox and this "
        f"script (and whatever else runs: check `uptime`, load {os.getloadavg()[0]:.1f} now)."
    )
    print()
    print(f"refreshes:                      {refreshed} of {args.connections} ({missing} not refreshed)")
    print(f"refreshes per second (workers): {rate:.0f} over {span:.0f} s, best second {best}")
    print(f"baseline (1 process, serial):   {baseline_rate:.0f} refreshes per second")
    print(f"expired before being refreshed: {late + missing}   target 0   {verdict(late + missing == 0)}")
    print(
        f"sandbox refresh calls per connection: {dict(sorted(calls.items()))}   target exactly 1 each   "
        f"{verdict(exactly_once == args.connections)}"
    )
    print(f"(the baseline's {len(sample_grants)} sample logins were refreshed once each before the run)")


if __name__ == "__main__":
    main()
