"""In-process profile of the cached reads beside the layer views, over Thor's WSGI app (no HTTP server).

Run (after `manage.py migrate` on that database):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/thor_perf REDIS_URL=redis://127.0.0.1:6379/10 \
    DJANGO_SETTINGS_MODULE=bench.settings DEBUG=false LOG_LEVEL=WARNING \
    .venv/bin/python bench/profile_positions.py [--requests 2000 --rounds 5 --profile /api/accounts/primary/positions]

Prints, per endpoint: microseconds per request (wall and CPU) of one thread calling the WSGI app as
granian does, and the SQL queries of a first read; what rendering a page of orders costs (DRF's
JSONRenderer, and orjson beside it when it is importable: it is not a dependency of Thor); with
--profile PATH, the top of a cProfile of the requests to PATH. A measurement aid, not a test.
"""

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("CELERY_BROKER_URL", "")
os.environ.setdefault("THOR_LIVE_FRESH_SECONDS", "3600")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from load import wsgi_environ  # noqa: E402

ANONYMOUS = "/api/bench/anonymous"
BARE = "/api/bench/bare"
ACCOUNT = "/api/bench/account"
POSITIONS = "/api/accounts/primary/positions"
FUNDS = "/api/accounts/primary/funds"
ORDERS = "/api/accounts/primary/orders"


def world() -> str:
    """A tenant, a user whose primary account is a linked Kite account, and its positions in the fresh cache."""
    from decimal import Decimal

    from accounts import presenters
    from accounts.models import Order, TradingAccount
    from brokers.adapters.types import Funds, Position
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
    snapshots._store(key, positions, 3600, 3600, present=presenters.positions_data)
    funds = Funds("INR", *(Decimal(v) for v in ("100000", "95000.5", "4999.5", "95000.5", "101234.25")))
    snapshots._store(snapshots.key(tenant.slug, account.pk, "funds"), funds, 3600, 3600, present=presenters.funds_data)
    if not account.orders.exists():
        Order.objects.bulk_create(
            Order(
                account=account,
                client_order_id=f"perf-{i}",
                broker_order_id=str(100000 + i),
                symbol="INFY",
                exchange="NSE",
                side="BUY",
                quantity=Decimal(1 + i % 5),
                order_type="LIMIT",
                product="CNC",
                price=Decimal("1500.05"),
                status="COMPLETE",
                filled_quantity=Decimal(1 + i % 5),
                average_price=Decimal("1500.05"),
            )
            for i in range(50)
        )
    return token_pair_for(user)["access"]


def environ_for(path: str, token: str) -> dict:
    return wsgi_environ(path, token)


def drive(app, path: str, token: str, *, total: int) -> tuple[float, float]:
    """(Seconds, CPU seconds of this process) for `total` requests, one after another, straight into the
    WSGI app (as granian calls it). CPU time leaves out the waits on Redis and PostgreSQL, and moves less
    than wall time when the machine is busy."""
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(total):
        body = b"".join(app(environ_for(path, token), start_response))
        if not statuses[-1].startswith("200"):
            raise RuntimeError(f"{path} answered {statuses[-1]}: {body[:300]!r}")
    return time.perf_counter() - started, time.process_time() - cpu_started


def queries_per_request(path: str, token: str) -> int:
    from django.test import Client

    with CaptureQueriesContext(connection) as captured:
        response = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content[:300]
    return len(captured)


CURSOR_PAGE = 25


def cursor_page(token: str) -> str:
    """The path of the second page of CURSOR_PAGE orders: built on every read (only the first is kept)."""
    from django.test import Client

    response = Client().get(ORDERS, {"limit": CURSOR_PAGE}, HTTP_AUTHORIZATION=f"Bearer {token}")
    following = urlsplit(response.json()["next"])
    return f"{following.path}?{following.query}"


def microseconds_per_call(call, *, total: int) -> float:
    started = time.perf_counter()
    for _ in range(total):
        call()
    return (time.perf_counter() - started) / total * 1e6


def rendering(app, path: str, token: str, *, total: int) -> None:
    """What turning a built page into bytes costs, beside the whole read of it. The page's values are all
    text, integers and None (orders are built as text, accounts.presenters.order_data), so the body
    parsed back is what the view hands its renderer."""
    from rest_framework.renderers import JSONRenderer

    body = b"".join(app(environ_for(path, token), lambda status, headers, exc_info=None: None))
    page = json.loads(body)
    render = JSONRenderer().render
    assert render(page) == body
    whole = drive(app, path, token, total=total)[0] / total * 1e6
    drf = microseconds_per_call(lambda: render(page), total=total)
    line = f"rendering {path} ({len(body):,} bytes): DRF's JSONRenderer {drf:.0f} us, {drf / whole:.1%} of its read ({whole:.0f} us)"
    try:
        import orjson
    except ImportError:
        print(f"{line}; orjson not installed")
        return
    print(f"{line}; orjson {microseconds_per_call(lambda: orjson.dumps(page), total=total):.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", metavar="PATH", help="cProfile the requests to this path")
    parser.add_argument("--middleware", help="comma-separated MIDDLEWARE to try instead of the settings' list")
    args = parser.parse_args()
    if args.middleware:
        from django.conf import settings

        settings.MIDDLEWARE = [name for name in args.middleware.split(",") if name]

    token = world()
    second_page = cursor_page(token)
    for path in (BARE, POSITIONS, FUNDS, ORDERS, second_page):
        print(f"{path}: {queries_per_request(path, token)} SQL queries per request (sync test client)")
    connection.close()

    from thor.serve import build_wsgi_application

    application = build_wsgi_application()  # what granian runs, gc.freeze() included
    paths = (ANONYMOUS, BARE, ACCOUNT, POSITIONS, FUNDS, ORDERS, second_page)
    for path in paths:
        drive(application, path, token, total=200)  # warm-up
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        drive(application, args.profile, token, total=args.requests)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(50)
    # The machine's speed drifts within seconds (a shared VM): the endpoints take turns, and each keeps its best round.
    best = {path: (float("inf"), float("inf")) for path in paths}
    for _ in range(args.rounds):
        for path in paths:
            seconds, cpu_seconds = drive(application, path, token, total=args.requests)
            best[path] = min(best[path], (seconds, cpu_seconds))
    for path, (seconds, cpu_seconds) in best.items():
        print(
            f"{path:40} {seconds / args.requests * 1e6:7.0f} us/request in-process "
            f"({cpu_seconds / args.requests * 1e6:5.0f} us CPU), best of {args.rounds} rounds"
        )
    rendering(application, second_page, token, total=args.requests)


if __name__ == "__main__":
    main()
