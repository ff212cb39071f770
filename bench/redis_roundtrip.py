"""What one cache round trip costs the process that asks, against the socket it travels on.

Run: .venv/bin/python bench/redis_roundtrip.py [--redis-url redis://127.0.0.1:6379/11 --requests 5000 --rounds 3]

A cached read of Thor pays authentication's round trip (the user and the session), the account's and the
snapshot's. This prints, per way of asking Redis for one small key, the wall time and this process's CPU
time per request: a bare socket (the floor: a system call each way), redis-py's connection level (its
protocol and parser), redis-py's client (its pool, retries and instrumentation) and django-redis through
Django's cache (what Thor calls), each in turn for --rounds rounds, best round kept. The ratio to the
socket is printed beside each. A measurement aid, not a test.
"""

import argparse
import os
import pickle
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEY = "thor:bench:roundtrip"


def timed(ask: Callable[[], object], requests: int) -> tuple[float, float]:
    """Microseconds of wall time and of this process's CPU per request."""
    ask()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        ask()
    return (time.perf_counter() - wall) / requests * 1e6, (time.process_time() - cpu) / requests * 1e6


def ways(redis_url: str) -> dict[str, Callable[[], object]]:
    import redis

    parts = urlsplit(redis_url)
    db = int(parts.path.strip("/") or 0)
    client = redis.Redis(host=parts.hostname, port=parts.port or 6379, db=db)
    client.set(KEY, pickle.dumps({"user": 1, "session": "live"}))

    bare = socket.create_connection((parts.hostname, parts.port or 6379))
    bare.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bare.sendall(f"*2\r\n$6\r\nSELECT\r\n${len(str(db))}\r\n{db}\r\n".encode())
    bare.recv(64)
    command = f"*2\r\n$3\r\nGET\r\n${len(KEY)}\r\n{KEY}\r\n".encode()

    def socket_get():
        bare.sendall(command)
        return bare.recv(4096)

    connection = client.connection_pool.get_connection()

    def connection_get():
        connection.send_command("GET", KEY)
        return connection.read_response()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thor.settings")
    os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("CELERY_BROKER_URL", "")
    import django

    django.setup()
    from django.core.cache import cache

    cache.set("bench:roundtrip", {"user": 1, "session": "live"}, 600)

    return {
        "a bare socket (GET, no parsing)": socket_get,
        "redis-py, connection level": connection_get,
        "redis-py client (pool, retry, instrumentation)": lambda: client.get(KEY),
        "django-redis (Django's cache, unpickled)": lambda: cache.get("bench:roundtrip"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()

    asks = ways(options.redis_url)
    best: dict[str, tuple[float, float]] = {}
    for _ in range(options.rounds):
        for name, ask in asks.items():
            wall, cpu = timed(ask, options.requests)
            if name not in best or cpu < best[name][1]:
                best[name] = (wall, cpu)
    load = os.getloadavg()[0]
    print(f"One small GET, {options.requests} a round, best of {options.rounds} rounds (load average {load:.1f}):")
    print(f"  {'way':48s} {'wall us':>8s} {'CPU us':>8s} {'CPU x socket':>13s}")
    floor = next(iter(best.values()))[1]
    for name, (wall, cpu) in best.items():
        print(f"  {name:48s} {wall:8.1f} {cpu:8.1f} {cpu / floor:13.1f}")


if __name__ == "__main__":
    main()
