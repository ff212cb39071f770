"""In-process profile of the cached positions read beside the bare view, over Thor's ASGI app (no HTTP, no uvicorn).

Run (after `manage.py migrate` on that database):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/thor_perf REDIS_URL=redis://127.0.0.1:6379/10 \
    DJANGO_SETTINGS_MODULE=bench.settings DEBUG=false LOG_LEVEL=WARNING \
    .venv/bin/python bench/profile_positions.py [--requests 2000 --concurrency 16 --profile]

Prints, per endpoint: requests per second of one process driving the app from its own event loop, the
sync<->async thread hops per request (asgiref SyncToAsync / AsyncToSync calls) and the SQL queries per
request; with --profile, the top of a cProfile of the positions requests. A measurement aid, not a test.
"""

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("CELERY_BROKER_URL", "")
os.environ.setdefault("THOR_LIVE_FRESH_SECONDS", "3600")

import django

django.setup()

from asgiref import sync as asgiref_sync  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

POSITIONS = "/api/accounts/primary/positions"
BARE = "/api/bench/bare"
hops = Counter()


def count_hops() -> None:
    for cls in (asgiref_sync.SyncToAsync, asgiref_sync.AsyncToSync):
        original = cls.__call__

        def counted(self, *args, _original=original, _name=cls.__name__, **kwargs):
            hops[_name] += 1
            return _original(self, *args, **kwargs)

        cls.__call__ = counted


def world() -> str:
    """A tenant, a user whose primary account is a linked Kite account, and its positions in the fresh cache."""
    from decimal import Decimal

    from accounts.api import serializers
    from accounts.models import TradingAccount
    from brokers.adapters.types import Position
    from brokers.tests.factories import linked_kite_account
    from identity.models import Tenant, User
    from identity.tokens import token_pair_for
    from thor import snapshots

    tenant, _ = Tenant.objects.get_or_create(slug="perf", defaults={"name": "Perf", "allowed_origins": []})
    user = User.objects.filter(email="perf@thor.local").first()
    if user is None:
        user = User.objects.create_user(email="perf@thor.local", password="perf-passphrase-42", tenant=tenant)
    account = TradingAccount.objects.filter(user=user, mode=TradingAccount.Mode.LIVE).first()
    if account is None:
        account = linked_kite_account(user)
    TradingAccount.objects.filter(user=user).update(is_primary=False)
    TradingAccount.objects.filter(pk=account.pk).update(is_primary=True)
    positions = [
        Position(
            symbol=symbol,
            exchange="NSE",
            product="CNC",
            quantity=Decimal(qty),
            average_price=Decimal("1234.5"),
            last_price=Decimal("1240.05"),
            realised_pnl=Decimal("0"),
            unrealised_pnl=Decimal("55.5"),
            day_pnl=Decimal("12.25"),
            value=Decimal("12400.5"),
            instrument_token=1000 + i,
            raw={"tradingsymbol": symbol, "exchange": "NSE", "quantity": qty, "average_price": 1234.5},
        )
        for i, (symbol, qty) in enumerate([("INFY", "10"), ("SBIN", "-5"), ("RELIANCE", "3")])
    ]
    # As the positions view stores a snapshot it fetched: with the serialized `data` beside it.
    key = snapshots.key(tenant.slug, account.pk, "positions")
    snapshots._store(key, positions, 3600, 3600, present=serializers.positions_data)
    return token_pair_for(user)["access"]


async def request(app, path: str, token: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"accept", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = []
    received = [False]
    done = asyncio.Event()

    async def receive():
        if not received[0]:
            received[0] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    done.set()
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


async def drive(app, path: str, token: str, *, total: int, concurrency: int) -> float:
    remaining = [total]

    async def client():
        while remaining[0] > 0:
            remaining[0] -= 1
            status, body = await request(app, path, token)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - started


def queries_per_request(path: str, token: str) -> int:
    from django.test import Client

    with CaptureQueriesContext(connection) as captured:
        response = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content[:300]
    return len(captured)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--middleware", help="comma-separated MIDDLEWARE to try instead of the settings' list")
    args = parser.parse_args()
    if args.middleware:
        from django.conf import settings

        settings.MIDDLEWARE = [name for name in args.middleware.split(",") if name]

    token = world()
    for path in (BARE, POSITIONS):
        print(f"{path}: {queries_per_request(path, token)} SQL queries per request (sync test client)")
    connection.close()

    from thor.asgi import application

    count_hops()

    async def run():
        for path in (BARE, POSITIONS):
            await drive(application, path, token, total=200, concurrency=args.concurrency)  # warm-up
        for path in (BARE, POSITIONS, BARE, POSITIONS):
            hops.clear()
            profiler = cProfile.Profile() if args.profile and path == POSITIONS else None
            if profiler:
                profiler.enable()
            seconds = await drive(application, path, token, total=args.requests, concurrency=args.concurrency)
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
            per_request = {name: round(count / args.requests, 1) for name, count in hops.items()}
            print(f"{path}: {args.requests / seconds:.0f} req/s in-process; hops per request {per_request}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
