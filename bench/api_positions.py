"""Cached reads (positions, funds, the first page of orders) beside the framework's floor, measured with wrk.

Run: .venv/bin/python bench/api_positions.py [--connections 16 --seconds 5 --workers 2 --rounds 3
     --servers uvicorn,gunicorn,granian --no-sizes]

In one run, on this machine, under each candidate server (2 workers each): a minimal DRF app (one
APIView, no middleware, no authentication, outside Thor's settings: bench/minimal_drf.py), then Thor
serving the same bench world: its bare view (full middleware, JWT) and the cached reads, each through
Django's stack and DRF's cycle (the one read path). Under the server Thor ships for production the
layers of a read are measured one by one as well, and every cell is measured in turns over several
rounds (each cell's median shown). The load generator is wrk (C, one thread). A measurement, not a test: it exits 0 whether the targets are met or not.
"""

import argparse
import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from harness import (
    SERVERS,
    SHIPPED_SERVER,
    Processes,
    exit_cleanly_on_sigterm,
    live_world,
    manage,
    start_server,
    switch_thor_server,
)
from load import WrkResult, ensure_wrk, verdict, wrk_load

MINIMAL = "/api/bench/minimal"
MINIMAL_REDIS = "/api/bench/minimal-redis"
MINIMAL_REDIS_PAGE = "/api/bench/minimal-redis-page"
ANONYMOUS = "/api/bench/anonymous"
BARE = "/api/bench/bare"
ACCOUNT = "/api/bench/account"
POSITIONS = "/api/accounts/primary/positions"
FUNDS = "/api/accounts/primary/funds"
ORDERS = "/api/accounts/primary/orders"
READS = {"positions": POSITIONS, "funds": FUNDS, "orders": ORDERS}
TARGET_RATIO = 0.45
TARGET_SIZE_RATIO = 2.0  # a big account's read may take at most twice a small one's time
BIG_ORDERS = 100_000
BIG_POSITIONS = 200
TARGET_P99_MS = 15.0
TARGET_CONNECTIONS = 16
WARM_UP_SECONDS = 1.0
# Longer than the run, so every measured live read is a cache hit: what this benchmark is about.
# The fresh period's effect on the broker is what bench/upstream_calls.py measures.
FRESH_SECONDS = 3600.0

# Issue 9's table, measured before this work with the same wrk settings (1 thread, 16 connections, 2 workers),
# when Thor shipped uvicorn: req/s (p99 ms).
BEFORE = [
    ("uvicorn (shipped then)", "1,339", "387 (p99 100)", "287 (p99 142)"),
    ("gunicorn, sync workers", "3,768", "1,085 (p99 20)", "610 (p99 32)"),
    ("granian, WSGI", "6,362", "-", "-"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=TARGET_CONNECTIONS)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per endpoint and server")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, from " + ", ".join(SERVERS))
    parser.add_argument(
        "--rounds", type=int, default=5, help=f"rounds under {SHIPPED_SERVER} (each cell's median is reported)"
    )
    parser.add_argument(
        "--no-sizes", action="store_true", help=f"skip the {BIG_ORDERS:,} orders / {BIG_POSITIONS} positions run"
    )
    args = parser.parse_args()
    servers = [server for server in args.servers.split(",") if server]
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    exit_cleanly_on_sigterm()
    ensure_wrk()

    results: dict[str, Rounds] = {}
    sources_ok = True
    with Processes() as processes:
        print(f"Setting up: database, sandbox, Thor; logs in {processes.log_dir}")
        world = live_world(processes, workers=args.workers, fresh_seconds=FRESH_SECONDS, server=servers[0])
        _give_orders(world, SMALL_ORDERS)
        _prime(world)

        def measure(url: str, path: str, token: str | None) -> WrkResult:
            wrk_load(url, path, token, connections=args.connections, seconds=WARM_UP_SECONDS)
            return wrk_load(url, path, token, connections=args.connections, seconds=args.seconds)

        for server in servers:
            print(f"Measuring under {server} ...")
            minimal, minimal_url = start_server(processes, server, app="minimal", workers=args.workers, env=world.env)
            if world.server != server:
                switch_thor_server(processes, world, server)
            sources_ok &= _all_cached(world)
            floor = ("minimal", (minimal_url, MINIMAL, None))
            thor = {name: (world.thor_url, path, world.token) for name, path in {"bare": BARE, **READS}.items()}
            cells = [floor, *thor.items()]
            rounds = 1
            if server == SHIPPED_SERVER:
                rounds = args.rounds
                # Each judged read right after a floor of its own: its ratio is taken within seconds.
                cells = [cell for name in READS for cell in (floor, (name, thor[name]))]
                cells += [
                    floor,
                    ("minimal_redis", (minimal_url, MINIMAL_REDIS, None)),
                    ("minimal_redis_page", (minimal_url, MINIMAL_REDIS_PAGE, None)),
                    ("anonymous", (world.thor_url, ANONYMOUS, world.token)),
                    ("bare", thor["bare"]),
                    ("account", (world.thor_url, ACCOUNT, world.token)),
                    ("orders_cursor", (world.thor_url, _cursor_page(world), world.token)),
                ]
            results[server] = _measured_in_rounds(cells, rounds, measure)
            processes.stop(minimal)
            sources_ok &= _all_cached(world)
        sizes = {}
        if SHIPPED_SERVER in servers and not args.no_sizes:
            print(
                f"Measuring a big account under {SHIPPED_SERVER}: {BIG_ORDERS:,} orders, {BIG_POSITIONS} positions ..."
            )
            if world.server != SHIPPED_SERVER:
                switch_thor_server(processes, world, SHIPPED_SERVER)
            _grow_account(world)
            cells = [
                ("positions", (world.thor_url, POSITIONS, world.token)),
                ("orders", (world.thor_url, ORDERS, world.token)),
                ("orders_cursor", (world.thor_url, _cursor_page(world), world.token)),
            ]
            sizes = _measured_in_rounds(cells, args.rounds, measure)
            sources_ok &= _all_cached(world)

    report(results, args, sources_ok)
    if sizes:
        _report_sizes(results[SHIPPED_SERVER], sizes)


# Run in `manage.py shell` against the bench world: orders straight into the table (what matters is how
# many the account has, not how they got there), and a positions snapshot as the broker would have sent it.
_GROW = """
from decimal import Decimal
from accounts.presenters import positions_data
from accounts.models import Order, TradingAccount
from brokers.adapters.types import Position
from django.conf import settings
from thor import snapshots

account = TradingAccount.objects.select_related("user__tenant").get(pk={account_id})
Order.objects.bulk_create(
    (
        Order(account=account, client_order_id=f"bench-{{i}}", symbol="INFY", exchange="NSE", side="BUY",
              quantity=Decimal(1), order_type="LIMIT", product="CNC", price=Decimal("1400"), status="CANCELLED")
        for i in range({first_order}, {orders})
    ),
    batch_size=5000,
)
# Written behind the ORM's back (bulk_create sends no signal): the kept first page must go, as a save does.
from accounts.caches import flush_order_pages
flush_order_pages(account.pk)
# What autovacuum would do soon after such growth: the planner's statistics see the new rows.
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("ANALYZE accounts_order")
positions = {positions} and [
    Position(symbol=f"BENCH{{i}}", exchange="NSE", product="CNC", quantity=Decimal(10), average_price=Decimal("100.5"),
             last_price=Decimal("101.25"), realised_pnl=Decimal(0), unrealised_pnl=Decimal("7.50"),
             day_pnl=Decimal("1.25"), value=Decimal("1012.50"), instrument_token=100000 + i)
    for i in range({positions})
]
if positions:
    key = snapshots.key(account.user.tenant.slug, account.pk, "positions")
    snapshots._store(key, positions, settings.THOR_LIVE_FRESH_SECONDS, settings.THOR_LIVE_STALE_SECONDS, positions_data)
"""
# A small account still has a full first page of orders: the big one's page is the same size.
SMALL_ORDERS = 50


def _give_orders(world, orders: int, positions: int = 0, first_order: int = 0) -> None:
    code = _GROW.format(account_id=world.account_id, first_order=first_order, orders=orders, positions=positions)
    manage(world.env, "shell", "-c", code)


def _grow_account(world) -> None:
    _give_orders(world, BIG_ORDERS, BIG_POSITIONS, first_order=SMALL_ORDERS)
    headers = {"Authorization": f"Bearer {world.token}"}
    body = requests.get(world.thor_url + POSITIONS, headers=headers, timeout=10).json()
    if len(body["data"]) != BIG_POSITIONS:
        raise RuntimeError(f"the big positions snapshot was not served: {len(body['data'])} positions")


def _report_sizes(small_rounds: "Rounds", big_rounds: "Rounds") -> None:
    small = {name: small_rounds.median(name) for name in small_rounds.runs}
    big = {name: big_rounds.median(name) for name in big_rounds.runs}
    print()
    print(f"Cost with size, under {SHIPPED_SERVER}: the same reads on a big account (time per request, big / small;")
    print(f"the small account: {SMALL_ORDERS} orders, the sandbox's few positions). Index: order_account_newest_first.")
    for name, what in (
        ("orders", f"first page of {BIG_ORDERS:,} orders"),
        ("orders_cursor", f"cursor page, {CURSOR_PAGE} of {BIG_ORDERS:,}"),
        ("positions", f"{BIG_POSITIONS} positions"),
    ):
        ratio = small[name].throughput / big[name].throughput if big[name].throughput else math.inf
        print(
            f"  {what:<28} {_cell(big[name]):>22}   small {_cell(small[name]):>18}   x{ratio:.2f}"
            f" (<= {TARGET_SIZE_RATIO:.0f}): {verdict(ratio <= TARGET_SIZE_RATIO)}"
        )


# The first page is kept rendered (accounts.order_pages); a cursor page is built on every read, so it
# shows what the query and the serializer cost.
CURSOR_PAGE = 25


def _cursor_page(world) -> str:
    """The path of the account's second page of CURSOR_PAGE orders."""
    headers = {"Authorization": f"Bearer {world.token}"}
    body = requests.get(world.thor_url + ORDERS, params={"limit": CURSOR_PAGE}, headers=headers, timeout=30).json()
    following = urlsplit(body["next"])
    return f"{following.path}?{following.query}"


def _prime(world) -> None:
    """The first read of each live snapshot goes to the broker (the sandbox); every later one is a cache hit."""
    for path in (POSITIONS, FUNDS):
        requests.get(world.thor_url + path, headers={"Authorization": f"Bearer {world.token}"}, timeout=30)


def _all_cached(world) -> bool:
    """Every live read in the measurements is a cache hit: checked before and after each server's round."""
    headers = {"Authorization": f"Bearer {world.token}"}
    for path in (POSITIONS, FUNDS):
        body = requests.get(world.thor_url + path, headers=headers, timeout=10).json()
        if body.get("source") != "cache":
            print(f"  {path} answered source={body.get('source')!r}, not 'cache'")
            return False
    return True


def _cell(result: WrkResult | None) -> str:
    if result is None:
        return "-"
    flag = "" if result.clean else f" !{result.non_2xx} non-2xx, {result.socket_errors} socket errors"
    return f"{result.throughput:,.0f} (p99 {result.p99 * 1000:.0f}){flag}"


def report(rounds: dict[str, "Rounds"], args, sources_ok: bool) -> None:
    results = {server: {name: measured.median(name) for name in measured.runs} for server, measured in rounds.items()}
    columns = [("minimal", "minimal DRF APIView"), ("bare", "Thor /api/bench/bare")]
    columns += [(name, f"Thor cached {name}" if name != "orders" else "Thor orders, 1st page") for name in READS]
    print()
    print(f"wrk: 1 thread, {args.connections} connections, {args.seconds:.0f} s per cell after a 1 s warm-up;")
    print(f"{args.workers} workers per server; PostgreSQL + Redis as in production; req/s (p99 ms).")
    print(
        f"Under {SHIPPED_SERVER}: {args.rounds} rounds, every cell once a round in turn, each read right after a run"
        " of the floor; each cell shows its median round."
    )
    every_run = [run for measured in rounds.values() for runs in measured.runs.values() for run in runs]
    stolen = sorted(run.stolen for run in every_run)
    print(
        f"CPU the host took from this machine while cells ran (steal): median {stolen[len(stolen) // 2]:.0%}, "
        f"worst cell {stolen[-1]:.0%}."
    )
    print()
    print("Before (issue 9, Thor as it was, same machine and wrk settings):")
    print(_row(["server", "minimal DRF APIView", "Thor /api/bench/bare", "Thor cached positions"]))
    for before in BEFORE:
        print(_row(before))
    print()
    print("Now (this run):")
    print(_row(["server"] + [title for _, title in columns]))
    for server, row in results.items():
        label = f"{server} (shipped)" if server == SHIPPED_SERVER else server
        print(_row([label] + [_cell(row.get(name)) for name, _ in columns]))

    fastest_server, fastest = max(
        ((server, row["minimal"]) for server, row in results.items()), key=lambda item: item[1].throughput
    )
    print()
    print(f"Fastest minimal DRF app: {fastest.throughput:,.0f} req/s under {fastest_server}.")
    shipped = rounds.get(SHIPPED_SERVER)
    if shipped is None:
        print(f"{SHIPPED_SERVER} (what Thor ships) was not measured: targets not judged.")
        return
    _layers(shipped)
    # Each read against the floor measured just before it, scaled down when another server's floor was
    # faster than the shipped server's.
    scale = results[SHIPPED_SERVER]["minimal"].throughput / fastest.throughput if fastest.throughput else 0.0
    print()
    print(f"Targets, Thor under {SHIPPED_SERVER} (shipped) against the fastest minimal DRF app of this run")
    print("(median of the rounds' ratios, each against the floor run just before it; the rounds' range in brackets):")
    for name in READS:
        ratios = sorted(ratio * scale for ratio in shipped.ratios(name))
        ratio = _middle(ratios)
        print(
            f"  {name:<10} ratio {ratio:.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}] (>= {TARGET_RATIO}): "
            f"{verdict(ratio >= TARGET_RATIO)}",
            end="",
        )
        if args.connections == TARGET_CONNECTIONS:
            p99s = sorted(run.p99 * 1000 for run in shipped.runs[name])
            p99_ms = _middle(p99s)
            print(
                f"   p99 {p99_ms:.1f} ms [{p99s[0]:.1f}-{p99s[-1]:.1f}] (< {TARGET_P99_MS:.0f}): "
                f"{verdict(p99_ms < TARGET_P99_MS)}"
            )
        else:
            print(f"   p99 is judged at {TARGET_CONNECTIONS} connections only")
    clean = all(run.clean for run in every_run)
    print(f"  every answer 2xx, no socket errors: {verdict(clean)}")
    print(f"  every positions and funds read a cache hit: {verdict(sources_ok)}")


def _middle(values: list):
    return values[len(values) // 2]


@dataclass
class Rounds:
    """Every run of each cell, and for each run the run of the floor ("minimal") measured last before it."""

    runs: dict[str, list[WrkResult]] = field(default_factory=dict)
    floors: dict[str, list[WrkResult]] = field(default_factory=dict)

    def median(self, name: str) -> WrkResult:
        """The median run by throughput: a run's own throughput and latencies together."""
        return _middle(sorted(self.runs[name], key=lambda run: run.throughput))

    def ratios(self, name: str) -> list[float]:
        return [
            run.throughput / floor.throughput if floor.throughput else 0.0
            for run, floor in zip(self.runs[name], self.floors[name], strict=True)
        ]


def _measured_in_rounds(cells: list[tuple[str, tuple]], rounds: int, measure) -> Rounds:
    """The cells in turn, `rounds` times. The machine's speed drifts within a minute: in turns every cell sees
    the same drift, and a cell measured right after the floor is compared with that run of it."""
    measured = Rounds()
    for _ in range(rounds):
        floor = None
        for name, (url, path, token) in cells:
            run = measure(url, path, token)
            measured.runs.setdefault(name, []).append(run)
            if name == "minimal":
                floor = run
            elif floor is not None:
                measured.floors.setdefault(name, []).append(floor)
    return measured


def _layers(shipped: "Rounds") -> None:
    """Machine time per request at saturation (1 / throughput) of each step from the floor to a cached read."""
    floor = shipped.median("minimal")
    layers = [
        ("server + DRF (minimal app): the floor", "minimal"),
        ("minimal app + one Redis GET of a body", "minimal_redis"),
        ("  the same, a 20 KB body (an orders page)", "minimal_redis_page"),
        ("Thor: settings, middleware, URLs, DRF", "anonymous"),
        ("Thor: + JWT (cached user and session)", "bare"),
        ("Thor: + the account (cached)", "account"),
        ("Thor: + the snapshot (cached positions)", "positions"),
    ]
    print()
    print(f"Where a cached positions read spends its time, under {SHIPPED_SERVER} (1 / req/s, whole machine;")
    print("x floor: the median of the rounds' ratios to the floor):")
    print(f"  {'step':<44}{'req/s':>9}{'us/request':>12}{'over floor':>12}{'x floor':>9}")
    for title, name in layers:
        if name not in shipped.runs or not shipped.median(name).throughput:
            continue
        result = shipped.median(name)
        micros = 1e6 / result.throughput
        over = micros - 1e6 / floor.throughput
        ratio = _middle(sorted(shipped.ratios(name))) if name != "minimal" else 1.0
        print(f"  {title:<44}{result.throughput:>9,.0f}{micros:>12.0f}{over:>12.0f}{ratio:>9.2f}")
    print("  (every read goes through Django's stack and DRF's cycle; the bare view is what every other")
    print("   endpoint pays)")


def _row(cells) -> str:
    first, *rest = cells
    return f"  {first:<24}" + "".join(f"{cell:>26}" for cell in rest)


if __name__ == "__main__":
    main()
