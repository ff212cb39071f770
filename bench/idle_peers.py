"""What a round trip to PostgreSQL or Redis costs when the peer has been idle, against one made back to back.

Run: .venv/bin/python bench/idle_peers.py [--database-url postgres://postgres@127.0.0.1:5432/postgres
     --redis-url redis://127.0.0.1:6379/14 --bursts 60 --gaps 0,0.001,0.01,0.125]

A paced benchmark (bench/placement.py places 8 orders a second) leaves every process idle between two
requests, and each request then wakes the processes it talks to in turn. This measures that wake: bursts of
round trips (a `SELECT 1`, then a Redis `GET`, alternating), each burst after `gap` seconds of sleep, and
prints the median wall and CPU time of the burst's 1st, 2nd, ... round trip. Its baseline is the same round
trip with no gap, in the same run; the ratio is beside each. A measurement aid, not a test.
"""

import argparse
import statistics
import time

import psycopg
import redis

TRIPS_PER_BURST = 8
KEY = "thor:bench:idle-peers"


def burst_times(ask_database, ask_redis, gap: float, bursts: int) -> list[tuple[float, float]]:
    """Per position in a burst: the median (wall, this thread's CPU) in microseconds."""
    samples: list[list[tuple[float, float]]] = [[] for _ in range(TRIPS_PER_BURST)]
    for _ in range(bursts):
        if gap:
            time.sleep(gap)
        for position in range(TRIPS_PER_BURST):
            wall, cpu = time.perf_counter(), time.thread_time()
            (ask_database if position % 2 == 0 else ask_redis)()
            samples[position].append(((time.perf_counter() - wall) * 1e6, (time.thread_time() - cpu) * 1e6))
    return [
        (statistics.median(wall for wall, _ in trips), statistics.median(cpu for _, cpu in trips)) for trips in samples
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--bursts", type=int, default=60)
    parser.add_argument("--gaps", default="0,0.001,0.01,0.125", help="seconds of sleep before each burst")
    args = parser.parse_args()

    database = psycopg.connect(args.database_url, autocommit=True)
    cache = redis.Redis.from_url(args.redis_url)
    cache.set(KEY, b"x" * 100)

    def ask_database():
        database.execute("SELECT 1").fetchall()

    def ask_redis():
        cache.get(KEY)

    burst_times(ask_database, ask_redis, 0, 20)  # warm-up: connections, first-call caches
    gaps = [float(gap) for gap in args.gaps.split(",")]
    if 0.0 not in gaps:
        gaps.insert(0, 0.0)
    results = {gap: burst_times(ask_database, ask_redis, gap, args.bursts) for gap in gaps}
    warm_wall = statistics.median(wall for wall, _ in results[0.0])
    print(
        f"Round trips in bursts of {TRIPS_PER_BURST} (PostgreSQL SELECT 1, Redis GET, alternating), {args.bursts} bursts"
    )
    print("a gap; median wall us (CPU us) of each round trip of the burst, in order; x = wall / back to back:")
    for gap, trips in results.items():
        cells = "  ".join(f"{wall:5.0f} ({cpu:3.0f})" for wall, cpu in trips)
        first = trips[0][0] / warm_wall
        print(f"  gap {gap * 1000:6.1f} ms: {cells}   1st x{first:.1f}")
    print(f"back to back (the baseline): {warm_wall:.0f} us a round trip")
    cache.delete(KEY)


if __name__ == "__main__":
    main()
