"""Upstream calls to Kite while many clients poll the positions of one live sandbox account.

Run: .venv/bin/python bench/upstream_calls.py [--clients 50 --seconds 30 --workers 2]

The sandbox counts every call it answers; the fresh cache and the single-flight lock should hold
them to one per fresh-cache period, and Thor's rate budget should keep Kite's 429s at zero.
A measurement, not a test: it exits 0 whether the targets are met or not.
"""

import argparse
import math

import requests
from harness import (
    SHIPPED_SERVER,
    Processes,
    exit_cleanly_on_sigterm,
    live_world,
)
from load import machine_note, run_load, verdict

POSITIONS = "/api/accounts/primary/positions"
UPSTREAM_POSITIONS = "GET /portfolio/positions"
FRESH_SECONDS = 5.0  # Thor's default THOR_LIVE_FRESH_SECONDS, set explicitly so the count can be judged.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the web server")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()

    with Processes() as processes:
        print(
            f"Setting up: database, sandbox, Thor ({SHIPPED_SERVER}, {args.workers} workers); logs in {processes.log_dir}"
        )
        world = live_world(processes, workers=args.workers, fresh_seconds=FRESH_SECONDS, server=SHIPPED_SERVER)
        # Only the polling is counted: not the OAuth exchange, not the first read.
        requests.delete(f"{world.sandbox_url}/_sandbox/stats", timeout=10).raise_for_status()
        result = run_load(world.thor_url, POSITIONS, world.token, connections=args.clients, seconds=args.seconds)
        stats = requests.get(f"{world.sandbox_url}/_sandbox/stats", timeout=10).json()

    upstream = stats["by_path"].get(UPSTREAM_POSITIONS, 0)
    too_many = stats["by_status"].get("429", 0)
    periods = result.seconds / FRESH_SECONDS
    # A window cuts into the period running when it opens, so it can hold one refresh more than whole periods.
    allowed = math.floor(periods) + 1

    print()
    print(f"{args.clients} clients polling GET {POSITIONS} of one live Kite (sandbox) account, back to back.")
    print(
        f"Thor: python -m thor.serve --server {SHIPPED_SERVER}, {args.workers} workers, fresh cache {FRESH_SECONDS:.0f} s."
    )
    print(machine_note(f"{args.workers} {SHIPPED_SERVER} workers, the sandbox"))
    print()
    print(f"client requests:            {result.requests} in {result.seconds:.1f} s ({result.throughput:.0f} req/s)")
    print(
        f"client latency:             p50 {result.percentile(50) * 1000:.1f} ms, p99 {result.percentile(99) * 1000:.1f} ms"
    )
    print(f"client statuses / sources:  {dict(result.statuses)} {dict(result.sources)}")
    print(f"sandbox calls by path:      {stats['by_path']}")
    print(f"sandbox calls by status:    {stats['by_status']}")
    print(f"upstream {UPSTREAM_POSITIONS}: {upstream}")
    print(f"fresh-cache periods:        {periods:.1f} (at most {allowed} refreshes fit in the window)")
    print(f"upstream calls per period:  {upstream / periods:.2f}")
    print(f"429s from the broker:       {too_many}")
    print()
    print(f"target <= 1 upstream call per fresh-cache period ({upstream} <= {allowed}): {verdict(upstream <= allowed)}")
    print(f"target zero 429s: {verdict(too_many == 0)}")
    print(f"every client response 200: {verdict(set(result.statuses) == {200})}")


if __name__ == "__main__":
    main()
