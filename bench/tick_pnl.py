"""Tick to socket: from a tick leaving the sandbox's Kite ticker to a socket receiving the P&L it moves (issue 21).

Run: .venv/bin/python bench/tick_pnl.py [--sockets 1000 --accounts 100 --instruments 500 --seconds 30]

The world (bench/ticks_world.py): PostgreSQL database `thor_bench_ticks` (dropped and migrated every run),
Redis DB 11 as cache and channel layer (flushed every run), the broker sandbox ticking every instrument once a
second, Thor (`python -m thor.serve`, uvicorn), the market stream (`manage.py run_market_stream`) on the
tenant's market-data session, paper accounts (one user each, INR) holding the instruments (NSE equities
from the master, each bought over HTTP by one account: instrument i by account i mod accounts), and the
sockets, each following one account (`/ws/orders/<id>`, its own ticket), dealt out over client processes of
their own (`--client-processes`, 2: each a loop of its own, as browsers are; frames decoded after the window).

The sandbox logs when each tick left (`/_sandbox/ticker/sent`, on for this run only). A socket's
`position_prices` carries each moved position's `last_price`: the tick that moved it is the first of the
run of ticks at that price on Thor's ticker connection, and the latency is from that tick leaving the
sandbox to the socket's receipt. The baseline, in the same window: the same instruments straight from the
sandbox to one official `KiteTicker` (its own session), from each tick leaving to `on_ticks`.

Behind: at every sample (each 100 ms of the window, and its end) each socket's last price of each
instrument its account holds against the ticks sent so far: up to date when it is the latest tick's price,
else behind since the first tick it has not caught up with. A measurement, not a test: exits 0 either way.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    KITE_API_KEY,
    KITE_API_SECRET,
    PYTHON,
    SPA,
    Processes,
    bench_env,
    exit_cleanly_on_sigterm,
    free_port,
    manage,
    reset_storage,
)
from load import percentile, verdict
from tick_matching import SAMPLE_SECONDS, baseline_latencies, behind, sent_by_token, thor_latencies
from ticks_world import (
    BASELINE_KITE_USER,
    STARTING_CASH,
    TENANT,
    THOR_KITE_USER,
    BaselineTicker,
    clients_finish,
    clients_start,
    holders_of,
    kite_access_token,
    market_data_session_create,
    master_load,
    positions_open,
    sent_log_read,
    sent_log_start,
    ticker_connections,
    users_create,
)
from ws_fanout import sockets_for

DATABASE = "thor_bench_ticks"
REDIS_URL = "redis://127.0.0.1:6379/11"
TARGET_P99_MS = 50.0
TARGET_SIZE = {"sockets": 1000, "accounts": 100, "instruments": 500}
PRICE_UPDATES_PER_SECOND = 4.0
# channels-redis's default capacity of a channel (a server process's key holds every message for its sockets).
LAYER_CAPACITY = 100


def layer_backlog(redis_url: str) -> int:
    """The most messages waiting in channels-redis for one server process (its key: `asgispecific.<id>!`)."""
    client = redis.Redis.from_url(redis_url)
    return max((client.zcard(key) for key in client.scan_iter("asgispecific.*", count=1000)), default=0)


def row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    figures = [percentile(ordered, p) * 1000 for p in (50, 99)] + [(ordered[-1] if ordered else float("nan")) * 1000]
    return f"  {name:<58}{len(ordered):>9}" + "".join(f"{figure:>9.1f}" for figure in figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=TARGET_SIZE["sockets"])
    parser.add_argument("--accounts", type=int, default=TARGET_SIZE["accounts"])
    parser.add_argument("--instruments", type=int, default=TARGET_SIZE["instruments"])
    parser.add_argument("--seconds", type=float, default=30.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=5.0, help="ticks flowing before the window opens")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (one per core)")
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--redis-url", default=REDIS_URL, help="its DB is flushed")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="processes the sockets' clients are dealt out over"
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="an argument for `thor.serve` (uvicorn), e.g. --server-arg=--ws=websockets-sansio; repeatable",
    )
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    port, sandbox_port = free_port(), free_port()
    thor_url, ws_url, sandbox_url = (
        f"http://127.0.0.1:{port}",
        f"ws://127.0.0.1:{port}",
        f"http://127.0.0.1:{sandbox_port}",
    )
    env = bench_env(
        database_url=f"postgres://postgres@127.0.0.1:5432/{args.database}",
        redis_url=args.redis_url,
        settings_module="thor.settings",
        THOR_PUBLIC_URL=thor_url,
        THOR_KITE_API_ROOT=sandbox_url,
        THOR_SANDBOX_KITE_API_KEY=KITE_API_KEY,
        THOR_SANDBOX_KITE_API_SECRET=KITE_API_SECRET,
        THOR_PAPER_PRICE_SOURCE="kite",
        THOR_ACCESS_TOKEN_MINUTES="120",
        THOR_WS_MAX_CONNECTIONS_PER_USER=str(args.sockets // args.accounts + 2),
        THOR_WS_PRICE_UPDATES_PER_SECOND=str(PRICE_UPDATES_PER_SECOND),
        THOR_ORDER_RATE="6000/min",
    )
    throttle = 1 / PRICE_UPDATES_PER_SECOND
    with Processes() as processes:
        print(f"Setting up: database {args.database}, Redis {args.redis_url}; logs in {processes.log_dir}", flush=True)
        reset_storage(env)
        manage(env, "create_tenant", TENANT, "--origin", SPA, "--currency", "INR", "--starting-cash", STARTING_CASH)
        sandbox_argv = ["manage.py", "run_broker_sandbox", "--port", str(sandbox_port), "--ticker-seconds", "1"]
        sandbox = processes.start("sandbox", [PYTHON, *sandbox_argv], env)
        thor_argv = ["-m", "thor.serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
        thor = processes.start("thor", [PYTHON, *thor_argv, "--log-level", "warning", *args.server_arg], env)
        processes.wait_ready(sandbox, f"{sandbox_url}/_sandbox/stats", timeout=300)
        processes.wait_ready(thor, f"{thor_url}/api/health/", timeout=120)
        instruments = master_load(env, sandbox_url, args.instruments)
        token_of = {listed.name: listed.token for listed in instruments}
        users = users_create(env, args.accounts)
        # Paper fills quote through the tenant's market-data connection (market.quotes): it comes first.
        token = kite_access_token(sandbox_url, THOR_KITE_USER)
        market_data_session_create(env, account_id=users[0]["account_id"], access_token=token)
        print(f"Buying {len(instruments)} instruments over HTTP on {len(users)} paper accounts.", flush=True)
        placed = positions_open(thor_url, users, instruments)
        holders = holders_of(instruments, users)
        holdings = {user["account_id"]: [] for user in users}
        for listed in instruments:
            for account_id in holders[listed.token]:
                holdings[account_id].append(listed.name)

        # The sockets open before the stream starts (as after a restart of the stream): on two busy cores,
        # handshakes that share them with the ticks' fan-out time out.
        print(f"Opening {args.sockets} sockets on {args.accounts} accounts.", flush=True)
        opening = time.time()
        clients = clients_start(thor_url, ws_url, sockets_for(users, args.sockets), args.client_processes)
        opened_in = time.time() - opening
        tokens = sorted(token_of.values())
        # Every tick Thor's stream ever gets is in the log, from its first.
        sent_log_start(sandbox_url, min(2_000_000, 2 * len(tokens) * int(args.warmup + args.seconds + 240)))
        processes.start("market-stream", [PYTHON, "manage.py", "run_market_stream", "--tenant", TENANT], env)
        deadline = time.time() + 120
        while time.time() < deadline:
            thors = [c for c in ticker_connections(sandbox_url) if c["user_id"] == THOR_KITE_USER]
            if thors and set(tokens) <= {int(t) for t in thors[0]["modes"]}:
                break
            time.sleep(0.5)
        else:
            print("Thor's ticker connection never subscribed every instrument held: the figures cover fewer.")
        baseline = BaselineTicker(sandbox_url, kite_access_token(sandbox_url, BASELINE_KITE_USER), tokens)
        baseline.start()
        print(f"Warming up {args.warmup:.0f} s, then measuring {args.seconds:.0f} s.", flush=True)
        time.sleep(args.warmup)
        opened_at = time.time()
        window = (opened_at, opened_at + args.seconds)
        thor_connections, waiting = [], []
        while time.time() < window[1]:
            # Between two bursts: the sandbox ticks at whole seconds of the shared monotonic clock, and these samples
            # (the listing is a JSON of every subscription) must not take the cores from what they measure.
            time.sleep(min(1.0 - (time.monotonic() - 0.5) % 1.0, max(0.0, window[1] - time.time())))
            listing = ticker_connections(sandbox_url)
            thor_connections.append(sum(1 for c in listing if c["user_id"] == THOR_KITE_USER))
            waiting.append(layer_backlog(args.redis_url))
        baseline.stop()
        results = clients_finish(clients)
        ticks, connection_users, lost = sent_log_read(sandbox_url)

    on = {user: {c for c, u in connection_users.items() if u == user} for user in (THOR_KITE_USER, BASELINE_KITE_USER)}
    thor_sent, baseline_sent = sent_by_token(ticks, on[THOR_KITE_USER]), sent_by_token(ticks, on[BASELINE_KITE_USER])
    in_window = [t for t in ticks if t[1] in on[THOR_KITE_USER] and window[0] <= t[4] < window[1]]
    rate = len(in_window) / max(1, len(tokens)) / args.seconds
    every, first, later, stream_in, stream_out, unmatched = thor_latencies(results, thor_sent, token_of, window)
    straight, straight_unmatched = baseline_latencies(baseline.receipts, baseline_sent, window)
    samples, at_end, unpriced = behind(results, thor_sent, token_of, holdings, window)

    print()
    print(
        f"Setup: Thor via `python -m thor.serve` (uvicorn), {args.workers} worker(s); channels-redis on {args.redis_url};"
    )
    print(
        f"PostgreSQL {args.database}; the market stream (`run_market_stream`) and the sandbox in their own processes."
    )
    print(
        f"{args.sockets} sockets, {args.sockets // args.accounts} per account, in {args.client_processes} client "
        f"process(es), opened in {opened_in:.1f} s; "
        f"{args.accounts} paper accounts holding {len(instruments)} NSE equities (bought over HTTP: {placed.statuses} "
        f"{placed.first_refusal}); throttle {PRICE_UPDATES_PER_SECOND:g}/s a socket ({throttle * 1000:.0f} ms)."
    )
    print(f"Machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end.")
    print(
        f"Ticks on Thor's connection in the window: {rate:.2f} per instrument per second "
        f"({len(in_window)} ticks); the sandbox's log lost {lost}."
    )
    print(
        f"Thor's ticker connections (the sandbox's list, each second of the window): "
        f"min {min(thor_connections)}, max {max(thor_connections)}; the baseline's: {len(on[BASELINE_KITE_USER])}."
    )
    retried = sum(socket["retries"] for socket in results)
    print(
        f"Socket messages other than position_prices: {_others(results)}; closed early: {_closed(results)}; "
        f"connects retried with a new ticket: {retried}"
    )
    print()
    print(f"  {'from the tick leaving the sandbox to':<58}{'samples':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print(row("baseline: one KiteTicker's on_ticks", straight))
    print(row("Thor: a socket's position_prices (every position)", every))
    print(row("  the first P&L a socket gets for a tick message", first))
    print(row("  the later ones (held by the socket's throttle)", later))
    print(row("  first ones, the sandbox to the market stream (as_of)", stream_in))
    print(row("  first ones, the market stream (as_of) to the socket", stream_out))
    print(f"  (prices matched to no tick: Thor {unmatched}, baseline {straight_unmatched})")
    print(
        f"Messages waiting in the channel layer for one of Thor's server processes (each second): median "
        f"{percentile(sorted(waiting), 50):.0f}, max {max(waiting)} (at {LAYER_CAPACITY} channels-redis drops "
        f"what comes next for that process; below it, a wait is the stream's own publishing)."
    )
    late = sum(1 for lag in samples if lag > throttle)
    print()
    print(
        f"Behind (a socket's last price of a held instrument vs the ticks sent), every {SAMPLE_SECONDS * 1000:.0f} ms "
        f"of the window: {len(samples)} samples, p99 {percentile(sorted(samples), 99) * 1000:.0f} ms, "
        f"max {max(samples, default=0) * 1000:.0f} ms, {late} over one throttle period; at the end: max "
        f"{max(at_end, default=0) * 1000:.0f} ms over {len(at_end)} (socket, instrument) pairs; "
        f"pairs without a price by the end: {unpriced}."
    )
    p99 = percentile(sorted(every), 99) * 1000
    full = all(getattr(args, key) >= value for key, value in TARGET_SIZE.items())
    print()
    print(
        f"Targets (issue 21) at {TARGET_SIZE['sockets']} sockets, {TARGET_SIZE['accounts']} accounts, "
        f"{TARGET_SIZE['instruments']} instruments{'' if full else ' (this run is smaller: FAIL by size)'}:"
    )
    print(
        f"  p99 tick -> socket P&L <= {TARGET_P99_MS:.0f} ms: {verdict(full and p99 <= TARGET_P99_MS)}  p99 {p99:.1f} ms"
    )
    print(f"  one upstream ticker connection for the app: {verdict(set(thor_connections) == {1})}")
    no_lag = max(samples + at_end, default=0) <= throttle and unpriced == 0
    print(f"  no socket more than one throttle period behind: {verdict(full and no_lag)}")


def _others(results) -> dict:
    counts: dict[str, int] = {}
    for socket in results:
        for kind, count in socket["other"].items():
            counts[kind] = counts.get(kind, 0) + count
    return counts


def _closed(results) -> int:
    return sum(1 for socket in results if socket["closed"] is not None)


if __name__ == "__main__":
    main()
