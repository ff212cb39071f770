"""In-process profile of a live placement: where `POST /api/accounts/{id}/orders` spends its time.

Run: .venv/bin/python bench/profile_placement.py [--orders 200 --broker kite|schwab --profile]
     [--database-url postgres://.../thor_x --redis-url redis://.../N]   (another helper's own, both wiped)

The bench world of bench/placement.py (its own database `thor_bench_placement_profile`, Redis DB 7,
the sandbox in its own process), then Thor's WSGI app called in this process as granian calls it, one
order after another at under 10 a second. Prints the wall time of a placement, the time inside each
step (cumulative, from cProfile: each step's share of the whole), the SQL queries and the sandbox calls
of one placement; with --profile the top of the profile as well. A measurement aid, not a test.
"""

import argparse
import cProfile
import importlib
import json
import os
import pstats
import time
import uuid

import requests
from harness import (
    Processes,
    exit_cleanly_on_sigterm,
    live_world,
)
from load import percentile, wsgi_environ
from placement import KITE_ORDER, SCHWAB_ORDER, UNTHROTTLED, _link_schwab, _thor_body
from ticks_world import BASELINE_KITE_USER, kite_access_token, market_data_session_create

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/thor_bench_placement_profile"
# Between two placements: under 6 a second, so that the run stays within Kite's 400 order calls a minute per user
# (brokers.adapters.kite_limits) however many phases it makes.
PACE_SECONDS = 0.16
REDIS_URL = "redis://127.0.0.1:6379/7"

# (label, module, name): the steps of a placement, each timed where it is called from (the module whose
# global it is), outermost first. A step inside another is counted in both.
SPANS = [
    ("DRF dispatch (authentication, throttles, the view)", "rest_framework.views", "APIView.dispatch"),
    ("  account_get", "accounts.selectors", "account_get"),
    ("  OrdersView.post", "accounts.api.views", "OrdersView.post"),
    ("order_place", "accounts.orders", "order_place"),
    ("  band_quote (the quote service, before any lock)", "accounts.orders.place", "band_quote"),
    ("  last_prices (a price source, before any lock)", "accounts.orders.place", "last_prices"),
    ("  account_lock (SELECT ... FOR UPDATE)", "accounts.orders.place", "account_lock"),
    ("  placed_order_for_key", "accounts.orders.place", "placed_order_for_key"),
    ("  trading_enabled_check", "accounts.orders.place", "trading_enabled_check"),
    ("  price_band_check", "accounts.orders.place", "price_band_check"),
    ("  pre_trade_check", "accounts.orders.place", "pre_trade_check"),
    ("  order_create", "accounts.orders.place", "order_create"),
    ("  order_event_record 'placed'", "accounts.orders.place", "order_event_record"),
    ("  live_order_send", "accounts.placement", "live_order_send"),
    ("    broker_call", "accounts.live", "broker_call"),
    ("      connection_require_active", "brokers.services.connections", "connection_require_active"),
    ("      adapter_for (an adapter and its client)", "brokers.services.connections", "adapter_for"),
    ("      the adapter's place (rate windows + HTTP)", "brokers.adapters.kite", "KiteAdapter.place"),
    ("      the adapter's place (rate windows + HTTP)", "brokers.adapters.schwab", "SchwabAdapter.place"),
    ("        ratelimit.reserve (the rate windows)", "thor.ratelimit", "reserve"),
    ("        Grant.settle (the order call counted from its answer)", "thor.ratelimit", "Grant.settle"),
    ("    live_snapshots_forget", "accounts.placement", "live_snapshots_forget"),
    ("    placement_answer_store (one statement)", "accounts.placement", "placement_answer_store"),
    ("    order_broker_update", "accounts.placement", "order_broker_update"),
    ("      broker_id_claim", "accounts.broker_updates", "broker_id_claim"),
    ("      order_event_record 'sent'", "accounts.broker_updates", "order_event_record"),
    ("event_with_seq_create (the audit row and its sequence numbers)", "accounts.audit", "event_with_seq_create"),
    ("publish_order_change", "accounts.audit", "publish_order_change"),
    ("  thor.realtime.publish (WebSocket, after commit)", "thor.realtime", "publish"),
    ("caches.flush_order_pages (after commit)", "accounts.caches", "flush_order_pages"),
    ("caches.flush_after_placement (after commit)", "accounts.caches", "flush_after_placement"),
    ("snapshots.forget", "thor.snapshots", "forget"),
    ("paper prices (MarketPriceSource.prices)", "accounts.prices", "MarketPriceSource.prices"),
    ("the quote service (bands, paper prices)", "market.quotes", "QuoteService.quotes"),
    ("KiteAdapter.__init__ (a KiteConnect client)", "brokers.adapters.kite", "KiteAdapter.__init__"),
    ("HTTP out (requests.Session.request)", "requests.sessions", "Session.request"),
    ("HTTP out (requests.Session.send)", "requests.sessions", "Session.send"),
    ("Redis commands (redis-py, this thread)", "redis.client", "Redis.execute_command"),
    ("Redis pipelines", "redis.client", "Pipeline.execute"),
    ("Redis commands (the publishing loop)", "redis.asyncio.client", "Redis.execute_command"),
    ("database commits", "django.db.backends.base.base", "BaseDatabaseWrapper.commit"),
    ("on_commit hooks", "django.db.backends.base.base", "BaseDatabaseWrapper.run_and_clear_commit_hooks"),
]

totals: dict[str, list] = {}


def _timed(label, function):
    def timed(*args, **kwargs):
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            total = totals.setdefault(label, [0.0, 0, 0.0])
            total[0] += time.perf_counter() - started
            total[1] += 1
            total[2] += time.thread_time() - cpu_started

    return timed


def spans_install() -> None:
    for label, module_name, name in SPANS:
        owner = importlib.import_module(module_name)
        *path, attribute = name.split(".")
        for part in path:
            owner = getattr(owner, part)
        if hasattr(owner, attribute):  # a step the code being profiled does not have (an older commit's) is left out
            setattr(owner, attribute, _timed(label, getattr(owner, attribute)))


def sql_timer(execute, sql, params, many, context):
    started, cpu_started = time.perf_counter(), time.thread_time()
    try:
        return execute(sql, params, many, context)
    finally:
        total = totals.setdefault("SQL statements", [0.0, 0, 0.0])
        total[0] += time.perf_counter() - started
        total[1] += 1
        total[2] += time.thread_time() - cpu_started


def _environ(path: str, token: str, body: bytes) -> dict:
    return wsgi_environ(path, token, method="POST", body=body, HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)


def place(app, path: str, token: str, order: dict, index: int) -> float:
    statuses = []
    body = json.dumps(_thor_body(order, order["price"] + index * 0.05)).encode()
    started = time.perf_counter()
    answer = b"".join(app(_environ(path, token, body), lambda status, headers, exc_info=None: statuses.append(status)))
    elapsed = time.perf_counter() - started
    if not statuses[-1].startswith("201"):
        raise RuntimeError(f"{path} answered {statuses[-1]}: {answer[:300]!r}")
    return elapsed


def spans_table(orders: int, whole: float, whole_cpu: float) -> None:
    """Wall time and the CPU time of the thread that ran the step (a wait on the database is wall, not CPU)."""
    print(f"  {'step':<52} {'ms/order':>9} {'share':>7} {'CPU ms':>7} {'calls/order':>12}")
    print(f"  {'the whole request (WSGI app)':<52} {whole * 1000:9.2f} {1:7.0%} {whole_cpu * 1000:7.2f} {1:12.1f}")
    for label, _, _ in [*SPANS, ("SQL statements", "", "")]:
        if label in totals:
            seconds, calls, cpu = totals[label]
            per_order = seconds / orders
            print(
                f"  {label:<52} {per_order * 1000:9.2f} {per_order / whole:7.0%} {cpu / orders * 1000:7.2f} "
                f"{calls / orders:12.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--broker", choices=("kite", "schwab"), default="kite")
    parser.add_argument("--profile", action="store_true", help="print the top of the profile too")
    parser.add_argument("--profile-out", help="with --profile: also save the profile there (pstats)")
    parser.add_argument("--database-url", default=DATABASE_URL, help="dropped and made again")
    parser.add_argument("--redis-url", default=REDIS_URL, help="flushed")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()

    with Processes() as processes:
        print(f"Setting up: database, sandbox; logs in {processes.log_dir}")
        world = live_world(
            processes,
            workers=1,
            fresh_seconds=60.0,
            server="granian",
            database_url=args.database_url,
            redis_url=args.redis_url,
            **UNTHROTTLED,
        )
        account_id, order = world.account_id, KITE_ORDER
        if args.broker == "schwab":
            account_id, order = _link_schwab(world), SCHWAB_ORDER
        else:
            # The tenant's market-data session (another Kite user's, as its own login is): the price band's quote
            # comes through it (market.quotes), as in production; without one every order goes on unchecked.
            market_data_session_create(
                world.env,
                account_id=account_id,
                access_token=kite_access_token(world.sandbox_url, BASELINE_KITE_USER),
                kite_user=BASELINE_KITE_USER,
            )
        processes.stop(world.thor)  # this process is Thor now
        os.environ.update(world.env)
        import django

        django.setup()
        from django.db import connection

        from thor.serve import build_wsgi_application

        app = build_wsgi_application()
        path = f"/api/accounts/{account_id}/orders"
        for index in range(10):  # warm-up: imports, connections, first-call caches
            place(app, path, world.token, order, index)
            time.sleep(0.15)
        one_placement(world, app, path, order, connection)

        latencies = []
        cpu_started = time.process_time()
        for index in range(args.orders):
            latencies.append(place(app, path, world.token, order, 20 + index))
            time.sleep(PACE_SECONDS)
        cpu = (time.process_time() - cpu_started) / args.orders
        ordered = sorted(latencies)
        print(
            f"{args.broker}: {args.orders} placements in-process (no timers): p50 "
            f"{percentile(ordered, 50) * 1000:.1f} ms, p99 {percentile(ordered, 99) * 1000:.1f} ms, "
            f"mean {sum(ordered) / len(ordered) * 1000:.1f} ms; this process's CPU {cpu * 1000:.1f} ms a placement "
            f"(load average {os.getloadavg()[0]:.1f})"
        )

        spans_install()
        whole = whole_cpu = 0.0
        with connection.execute_wrapper(sql_timer):
            for index in range(args.orders):
                cpu_started = time.thread_time()
                whole += place(app, path, world.token, order, 20 + args.orders + index)
                whole_cpu += time.thread_time() - cpu_started
                time.sleep(PACE_SECONDS)
        print(f"Where a placement's time goes, {args.orders} more placements with timers around each step (mean):")
        spans_table(args.orders, whole / args.orders, whole_cpu / args.orders)

        if args.profile:
            profiler = cProfile.Profile()
            for index in range(args.orders):
                profiler.enable()
                place(app, path, world.token, order, 20 + 2 * args.orders + index)
                profiler.disable()
                time.sleep(PACE_SECONDS)
            stats = pstats.Stats(profiler)
            if args.profile_out:
                stats.dump_stats(args.profile_out)
            stats.sort_stats("cumulative").print_stats(60)
            stats.sort_stats("tottime").print_stats(25)


def one_placement(world, app, path, order, connection) -> None:
    """The SQL statements and the sandbox calls of one placement."""
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    calls_before = requests.get(f"{world.sandbox_url}/_sandbox/stats", timeout=5).json()["by_path"]
    with connection.execute_wrapper(record):
        place(app, path, world.token, order, 10)
    calls_after = requests.get(f"{world.sandbox_url}/_sandbox/stats", timeout=5).json()["by_path"]
    calls = {
        key: count - calls_before.get(key, 0)
        for key, count in calls_after.items()
        if count != calls_before.get(key, 0) and "/_sandbox/stats" not in key
    }
    print(f"One placement: {len(statements)} SQL statements, sandbox calls {calls}")
    for sql in statements:
        print(f"    {sql[:160]}")


if __name__ == "__main__":
    main()
