"""Thor as `make run` starts it (scripts/run_embedded.sh), for the browser suite: the broker sandbox beside
`python -m thor.serve`, the demo tenant and its sandbox apps from `seed_demo`, on free ports of 127.0.0.1.

The world is the suite's own: PostgreSQL database `thor_browser` dropped and migrated fresh, Redis DB 7
emptied (THOR_BROWSER_DATABASE_URL and THOR_BROWSER_REDIS_URL choose others). The SPA pages are served from
http://localhost:5173 (browser/static_server.py), the origin `seed_demo` allows.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import requests

from brokers.sandbox.testing import sandbox_is_up

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DATABASE_URL = os.environ.get("THOR_BROWSER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/thor_browser")
REDIS_URL = os.environ.get("THOR_BROWSER_REDIS_URL", "redis://127.0.0.1:6379/7")
STARTUP_SECONDS = 90
# Access tokens last one minute (the shortest THOR_ACCESS_TOKEN_MINUTES allows), so the refresh flow meets
# an expired one within the suite's few minutes, as an SPA left open does.
ACCESS_TOKEN_MINUTES = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_recreate(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


@dataclass
class Stack:
    """Thor and the sandbox, running; `stop()` ends both."""

    thor_url: str
    sandbox_url: str
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.thor_url}/api"

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def environment(thor_url: str, sandbox_url: str) -> dict:
    return {
        **os.environ,
        "THOR_ENV": "development",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": "",
        "THOR_PUBLIC_URL": thor_url,
        # What scripts/run_embedded.sh points at the sandbox, on this sandbox's port.
        "THOR_KITE_API_ROOT": sandbox_url,
        "THOR_KITE_LOGIN_URL": f"{sandbox_url}/connect/login",
        "THOR_SANDBOX_URL": sandbox_url,
        "THOR_SCHWAB_API_BASE": sandbox_url,
        "THOR_SCHWAB_AUTH_BASE": sandbox_url,
        "THOR_ACCESS_TOKEN_MINUTES": str(ACCESS_TOKEN_MINUTES),
    }


def _wait_until_up(stack: Stack) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        for process in stack.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}\n{stack.log_tail()}")
        try:
            thor_up = requests.get(f"{stack.api}/health/", timeout=10).status_code == 200
            sandbox_up = sandbox_is_up(stack.sandbox_url)
            if thor_up and sandbox_up:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"Thor or the sandbox did not answer within {STARTUP_SECONDS}s\n{stack.log_tail()}")


def start() -> Stack:
    thor_port, sandbox_port = free_port(), free_port()
    stack = Stack(
        thor_url=f"http://127.0.0.1:{thor_port}",
        sandbox_url=f"http://127.0.0.1:{sandbox_port}",
        logs=Path(tempfile.mkdtemp(prefix="thor-browser-logs-")),
    )
    env = environment(stack.thor_url, stack.sandbox_url)
    database_recreate(DATABASE_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    manage = [PYTHON, "manage.py"]
    # Every command is built here from constants and free ports, none from input.
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)  # noqa: S603
    commands = {
        "sandbox": [*manage, "run_broker_sandbox", "--port", str(sandbox_port)],
        "thor": [PYTHON, "-m", "thor.serve", "--host", "127.0.0.1", "--port", str(thor_port), "--log-level", "warning"],
    }
    try:
        for name, command in commands.items():
            with open(stack.logs / f"{name}.log", "wb") as log:
                stack.processes.append(
                    subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
                )
        _wait_until_up(stack)
        # Once the sandbox is up: seed_demo links the demo tenant's market-data sessions at its Kite and Schwab.
        subprocess.run([*manage, "seed_demo"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
    except BaseException:
        stack.stop()
        raise
    return stack
