"""Throughput and latency of `GET /api/accounts/primary/positions` served from the cache, beside a bare DRF view.

Run: .venv/bin/python bench/api_positions.py [--connections 16 --seconds 10 --workers 2]

Both endpoints are measured in the same run, on the same server, with the same clients, in
alternating rounds so that drift (a warming cache, another process waking up) hits both alike.
A measurement, not a test: it exits 0 whether the targets are met or not.
"""

import argparse

from harness import LoadResult, Processes, exit_cleanly_on_sigterm, live_world, machine_note, run_load, verdict

POSITIONS = "/api/accounts/primary/positions"
BARE = "/api/bench/bare"
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
TARGET_CONNECTIONS = 16
ROUNDS = 2
WARM_UP_SECONDS = 2.0
# Longer than the run, so every measured read is a cache hit: what this benchmark is about.
# The fresh period's effect on the broker is what bench/upstream_calls.py measures.
FRESH_SECONDS = 3600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=TARGET_CONNECTIONS)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per endpoint")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()

    with Processes() as processes:
        print(f"Setting up: database, sandbox, Thor (uvicorn, {args.workers} workers); logs in {processes.log_dir}")
        world = live_world(processes, workers=args.workers, fresh_seconds=FRESH_SECONDS)
        results = {BARE: LoadResult(), POSITIONS: LoadResult()}

        def load(path: str, seconds: float) -> LoadResult:
            return run_load(world.thor_url, path, world.token, connections=args.connections, seconds=seconds)

        # Fills the positions cache, opens the database connections and warms both workers.
        for path in results:
            load(path, WARM_UP_SECONDS)
        for _ in range(ROUNDS):
            for path, total in results.items():
                total.merge(load(path, args.seconds / ROUNDS))

    report(results[BARE], results[POSITIONS], args, world.workers)


def report(bare: LoadResult, positions: LoadResult, args, workers: int) -> None:
    print()
    print(f"GET {POSITIONS} (served from cache) vs GET {BARE} (bare DRF APIView, same JWT auth and middleware)")
    print(f"Thor: uvicorn thor.asgi:application, {workers} workers, PostgreSQL + Redis cache.")
    print(machine_note(f"{workers} uvicorn workers"))
    print(f"{args.connections} connections, {args.seconds:.0f} s per endpoint in {ROUNDS} alternating rounds.")
    print()
    print(f"{'endpoint':<12}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}  statuses / sources")
    for name, result in (("bare", bare), ("positions", positions)):
        print(
            f"{name:<12}{result.requests:>10}{result.throughput:>10.0f}"
            f"{result.percentile(50) * 1000:>10.2f}{result.percentile(99) * 1000:>10.2f}"
            f"  {dict(result.statuses)} {dict(result.sources)}"
        )
    ratio = positions.throughput / bare.throughput if bare.throughput else 0.0
    p99_ms = positions.percentile(99) * 1000
    all_ok = set(positions.statuses) == {200} and set(bare.statuses) == {200} and set(positions.sources) == {"cache"}
    print()
    print(f"ratio positions/bare throughput: {ratio:.2f}")
    print(f"target ratio >= {TARGET_RATIO}: {verdict(ratio >= TARGET_RATIO)}")
    if args.connections == TARGET_CONNECTIONS:
        print(f"target positions p99 < {TARGET_P99_MS:.0f} ms: {verdict(p99_ms < TARGET_P99_MS)}")
    else:
        print(f"target p99 < {TARGET_P99_MS:.0f} ms is set at {TARGET_CONNECTIONS} connections: not judged")
    print(f"every response 200, every positions read from the cache: {verdict(all_ok)}")


if __name__ == "__main__":
    main()
