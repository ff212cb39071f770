"""Fan-out of order WebSocket messages: publish-to-receipt latency, messages per second and seq gaps.

Run: .venv/bin/python bench/ws_fanout.py [--sockets 1000 --accounts 100 --rates 5,10,20,40 --phase-seconds 12]

The world: PostgreSQL database `thor_bench_ws` (dropped and migrated every run), Redis DB 11 as cache
and channel layer (channels-redis, flushed every run), Thor served as in production
(`python -m thor.serve`, uvicorn), paper accounts filling at the fixed price table. One user per
account; every socket signs in with its own one-time ticket (`POST /api/ws/ticket`, bought just before it connects) and follows one
account (`/ws/orders/<id>`), sockets spread evenly over the accounts. The clients are asyncio
`websockets` connections in a separate process.

Paper market orders are placed over HTTP at a steady rate, round-robin over the accounts, in phases of
rising rate. Each fill publishes 4 messages (placed, filled, positions, funds) to every socket of its
account. Latency is from the fill's order update `as_of` (when its OrderEvent row was written, the
last write of the transaction) to receipt: the commit, the channel layer and the socket.

The baseline, measured first in the same run: one socket on one account, the same pipeline, at the
first rate. A measurement, not a test: it exits 0 whether the target is met or not.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import socket_clients
from harness import (
    PYTHON,
    REPO,
    Processes,
    bench_env,
    exit_cleanly_on_sigterm,
    free_port,
    manage,
    reset_storage,
)
from load import percentile, verdict

DATABASE_NAME = "thor_bench_ws"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
# None the tests (14, and the low numbers helpers take) or the other benchmarks (8, 9, 10, 12) use: a flush
# there would spend the tickets.
REDIS_URL = "redis://127.0.0.1:6379/11"
TENANT = "bench-ws"
TARGET_P99_MS = 100.0
TARGET_SOCKETS = 1000
MESSAGES_PER_FILL = 4
# The clients stop once all is in, or when nothing more arrived for this long.
DRAIN_SECONDS = 5.0

# Made in the bench world by `manage.py shell`: users with paper accounts and an access token each.
# Their passwords are never used, so the cheap hasher keeps a hundred sign-ups from taking a minute.
MAKE_USERS = """
import json, sys
from django.test.utils import override_settings
from rest_framework_simplejwt.tokens import AccessToken
from accounts.models import TradingAccount
from identity.services import user_register
users = []
with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
    for number in range({count}):
        user = user_register(email=f"ws{{number}}@bench.test", password="bench-passphrase-42", tenant_slug="{tenant}")
        account = TradingAccount.objects.get(user=user, is_primary=True)
        users.append({{"account_id": account.pk, "token": str(AccessToken.for_user(user))}})
sys.stdout.write("USERS" + json.dumps(users))
"""


def make_users(env: dict, count: int, *, tenant: str = TENANT) -> list[dict]:
    code = MAKE_USERS.format(count=count, tenant=tenant)
    out = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out[out.index("USERS") + len("USERS") :])


def sockets_for(users: list[dict], sockets: int) -> list[dict]:
    return [users[number % len(users)] for number in range(sockets)]


# --- The client process ----------------------------------------------------------------------


async def client_main(spec_path: str) -> None:
    import websockets

    spec = json.loads(Path(spec_path).read_text())
    opening = socket_clients.Opening(spec["thor_url"], spec["ws_url"])

    # (received at, publish-to-receipt seconds for an order update or None): every stream message.
    receipts: list[tuple[float, float | None]] = []
    sockets_stats = []
    stop = asyncio.Event()

    async def follow(entry: dict) -> None:
        stats = {"received": 0, "gaps": 0, "duplicates": 0, "repairs": 0, "last_seq": None, "closed": None}
        sockets_stats.append(stats)
        connection, subscribed, retries = await opening.open(entry, retry_on=(websockets.ConnectionClosed,))
        stats["last_seq"] = subscribed["seq"]
        if retries:
            stats["ticket_retries"] = retries

        def count(received_at: float, message: dict) -> None:
            kind = message.get("type")
            if kind == "subscribed":
                stats["last_seq"] = message["seq"]
                return
            if kind == "resynced":
                # Sent unasked: the server found a gap and resent the missing messages itself.
                stats["repairs"] += 1
                return
            seq, last = message["seq"], stats["last_seq"]
            if seq <= last:
                stats["duplicates"] += 1
                return
            if seq != last + 1:
                stats["gaps"] += 1
            stats["last_seq"] = seq
            stats["received"] += 1
            latency = None
            # The fill's update: its as_of is the last write before the commit, so this is publish to receipt.
            if kind == "order_update" and message["data"]["status"] == "COMPLETE":
                latency = received_at - datetime.fromisoformat(message["as_of"]).timestamp()
            receipts.append((received_at, latency))

        stats["closed"] = await socket_clients.received_until(connection, stop, count)

    tasks = [asyncio.create_task(follow(entry)) for entry in spec["sockets"]]
    await opening.all_opened(tasks)

    async def report_progress() -> None:
        while not stop.is_set():
            Path(spec["progress_path"]).write_text(str(sum(stats["received"] for stats in sockets_stats)))
            await asyncio.sleep(0.5)

    progress = asyncio.create_task(report_progress())
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    stop.set()
    await progress
    await asyncio.gather(*tasks, return_exceptions=True)
    Path(spec["result_path"]).write_text(json.dumps({"receipts": receipts, "sockets": sockets_stats}))
    print("DONE", flush=True)


# --- The publisher and the report ------------------------------------------------------------


class Publisher:
    """Paper market orders over HTTP at a steady rate; a pool so one slow answer does not hold the beat."""

    def __init__(self, thor_url: str, users: list[dict]):
        self.thor_url, self.users = thor_url, users
        self.statuses = Counter()
        self.placed = Counter()  # account id -> orders answered 201
        self.next_user = 0
        self.first_refusal = ""
        self.lock = threading.Lock()

    def place(self, user: dict) -> None:
        body = socket_clients.market_buy("NASDAQ", "AAPL")
        try:
            response = requests.post(
                f"{self.thor_url}/api/accounts/{user['account_id']}/orders",
                json=body,
                headers={"Authorization": f"Bearer {user['token']}"},
                timeout=30,
            )
            status = response.status_code
            if status != 201 and not self.first_refusal:
                self.first_refusal = response.text[:300]
        except requests.RequestException as error:
            status = type(error).__name__
        with self.lock:
            self.statuses[status] += 1
            if status == 201:
                self.placed[user["account_id"]] += 1

    def run(self, *, rate: float, seconds: float, users: list[dict]) -> tuple[float, float]:
        began = time.time()
        with ThreadPoolExecutor(max_workers=16) as pool:
            beat = 0
            while (due := began + beat / rate) < began + seconds:
                time.sleep(max(0.0, due - time.time()))
                user = users[self.next_user % len(users)]
                self.next_user += 1
                # One share of AAPL: an account's cash lasts for over 400 of them.
                pool.submit(self.place, user)
                beat += 1
        return began, time.time()


def run_clients(sockets: list[dict], thor_url: str, ws_url: str) -> tuple[subprocess.Popen, Path]:
    workdir = Path(tempfile.mkdtemp(prefix="thor-ws-clients-"))
    result_path = workdir / "result.json"
    spec = {
        "thor_url": thor_url,
        "ws_url": ws_url,
        "sockets": sockets,
        "result_path": str(result_path),
        "progress_path": str(workdir / "progress"),
    }
    return socket_clients.clients_process_start(__file__, workdir / "spec.json", spec), result_path


def finish_clients(child: subprocess.Popen, result_path: Path, expected: int) -> dict:
    """Stop the clients once every expected message is in, or nothing more arrived for DRAIN_SECONDS."""
    progress_path, last, last_change = result_path.parent / "progress", -1, time.time()
    while time.time() - last_change < DRAIN_SECONDS:
        time.sleep(0.5)
        received = int(progress_path.read_text() or 0) if progress_path.exists() else 0
        if received >= expected:
            break
        if received != last:
            last, last_change = received, time.time()
    socket_clients.clients_process_stop(child, timeout=60)
    return json.loads(result_path.read_text())


def phase_latencies(result: dict, began: float, ended: float) -> list[float]:
    return sorted(
        latency for at, latency in result["receipts"] if latency is not None and began <= at - latency < ended
    )


def summarize(name: str, result: dict, spans: list[tuple[float, tuple[float, float]]], expected: int) -> list[str]:
    sockets = result["sockets"]
    received = sum(s["received"] for s in sockets)
    lines = []
    for index, (rate, (began, ended)) in enumerate(spans):
        # A fill belongs to the phase it was published in (its as_of); receipts are counted while the
        # phase runs (the last one's also through the drain).
        until = spans[index + 1][1][0] if index + 1 < len(spans) else ended + DRAIN_SECONDS
        latencies = phase_latencies(result, began, ended)
        in_window = sum(1 for at, _ in result["receipts"] if began <= at < until)
        lines.append(
            f"{name:<10}{rate:>8.0f}{len(latencies):>10}"
            f"{percentile(latencies, 50) * 1000:>10.1f}{percentile(latencies, 99) * 1000:>10.1f}"
            f"{in_window / (until - began):>12.0f}"
        )
    totals = (
        f"{name}: {len(sockets)} sockets; stream messages received {received} of {expected} expected; "
        f"gaps seen by clients {sum(s['gaps'] for s in sockets)}, duplicates {sum(s['duplicates'] for s in sockets)}, "
        f"gaps repaired by the server {sum(s['repairs'] for s in sockets)}; "
        f"connects retried with a new ticket {sum(s.get('ticket_retries', 0) for s in sockets)}; "
        f"sockets closed early {sum(1 for s in sockets if s['closed'] is not None)}"
    )
    return [*lines, totals]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=TARGET_SOCKETS)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--rates", default="5,10,20,40", help="orders per second, one phase each")
    parser.add_argument("--phase-seconds", type=float, default=12.0)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (one per core)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        socket_clients.client_run(client_main(args.client))
        return
    exit_cleanly_on_sigterm()
    rates = [float(rate) for rate in args.rates.split(",")]
    port = free_port()
    thor_url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    env = bench_env(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        settings_module="thor.settings",
        THOR_PAPER_PRICE_SOURCE="fixed",
        THOR_ACCESS_TOKEN_MINUTES="30",
        THOR_PUBLIC_URL=thor_url,
        THOR_WS_MAX_CONNECTIONS_PER_USER=str(args.sockets // args.accounts + 2),
        THOR_ORDER_RATE="6000/min",
    )
    with Processes() as processes:
        print(f"Setting up: database {DATABASE_NAME}, Redis {REDIS_URL}, Thor; logs in {processes.log_dir}", flush=True)
        reset_storage(env)
        manage(env, "create_tenant", TENANT, "--origin", "http://localhost:5173")
        thor = processes.start(
            "thor",
            [
                PYTHON,
                "-m",
                "thor.serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            env,
        )
        processes.wait_ready(thor, f"{thor_url}/api/health/")
        users = make_users(env, args.accounts)
        publisher = Publisher(thor_url, users)

        print("Baseline: one socket on one account.", flush=True)
        child, result_path = run_clients(sockets_for(users[:1], 1), thor_url, ws_url)
        baseline_span = publisher.run(rate=rates[0], seconds=args.phase_seconds, users=users[:1])
        baseline_expected = publisher.placed[users[0]["account_id"]] * MESSAGES_PER_FILL
        baseline = finish_clients(child, result_path, baseline_expected)

        print(f"Opening {args.sockets} ticket sockets on {args.accounts} accounts.", flush=True)
        opening = time.time()
        child, result_path = run_clients(sockets_for(users, args.sockets), thor_url, ws_url)
        opened_in = time.time() - opening
        placed_before = Counter(publisher.placed)
        spans = []
        for rate in rates:
            print(f"Publishing {rate:.0f} fills/s for {args.phase_seconds:.0f} s.", flush=True)
            spans.append((rate, publisher.run(rate=rate, seconds=args.phase_seconds, users=users)))
        per_account_sockets = Counter(entry % args.accounts for entry in range(args.sockets))
        expected = sum(
            (publisher.placed[user["account_id"]] - placed_before[user["account_id"]])
            * MESSAGES_PER_FILL
            * per_account_sockets[number]
            for number, user in enumerate(users)
        )
        fanout = finish_clients(child, result_path, expected)

    print()
    print(f"Setup: Thor via `python -m thor.serve` (uvicorn), {args.workers} worker(s); channels-redis on {REDIS_URL};")
    print(
        f"PostgreSQL {DATABASE_NAME}; paper fills at the fixed price table; orders over HTTP round-robin over accounts."
    )
    print(
        f"{args.sockets} sockets, each with its own one-time ticket, {args.sockets // args.accounts} per account, "
        f"opened in {opened_in:.1f} s; clients: asyncio `websockets` in one separate process."
    )
    print(f"Machine: {os.cpu_count()} cores shared by Thor, PostgreSQL, Redis, the publisher and the clients.")
    print(f"HTTP answers to the order placements: {dict(publisher.statuses)} {publisher.first_refusal}")
    print(f"Close codes of sockets closed early: {Counter(str(s['closed']) for s in fanout['sockets'] if s['closed'])}")
    print()
    print(f"{'run':<10}{'fills/s':>8}{'samples':>10}{'p50 ms':>10}{'p99 ms':>10}{'msgs/s rx':>12}")
    for line in summarize("baseline", baseline, [(rates[0], baseline_span)], baseline_expected):
        print(line)
    for line in summarize("fan-out", fanout, spans, expected):
        print(line)
    print("(samples: fills published in the phase and received, whose publish-to-receipt latency is measured;")
    print(" msgs/s rx: all stream messages received while the phase ran, by all sockets.)")
    at_target = phase_latencies(fanout, *spans[0][1])
    p99_first = percentile(at_target, 99) * 1000
    print()
    print(
        f"Target: p99 under {TARGET_P99_MS:.0f} ms at {TARGET_SOCKETS} sockets (first phase, {rates[0]:.0f} fills/s)."
    )
    print(f"{verdict(p99_first < TARGET_P99_MS and args.sockets >= TARGET_SOCKETS)}  p99 {p99_first:.1f} ms")


if __name__ == "__main__":
    main()
