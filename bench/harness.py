"""What the benchmarks share: the bench world on PostgreSQL and Redis, the child servers, the load generators.

The world is Thor's production-like stack on this machine: PostgreSQL database `thor_bench`
(dropped and migrated on every run), Redis DB 9 as the cache (flushed on every run), no Celery
broker, Thor started the way production starts it (`python -m thor.serve`), and the broker sandbox
standing in for Kite. Every child process is started in its own session and stopped, with whatever
it started, however the run ends.

Two load generators: `wrk` (a C program: what throughput and latency are measured with) and
`run_load` (Python threads that read every body: what bench/upstream_calls.py counts sources with).
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import redis
import requests

REPO = Path(__file__).resolve().parent.parent
# The scripts run as `python bench/<name>.py`: the repository root is not on the path by itself.
sys.path.insert(0, str(REPO))
from brokers.sandbox.testing import submit_login  # noqa: E402
from thor.serve import GRANIAN_BLOCKING_THREADS  # noqa: E402

PYTHON = sys.executable
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_NAME = "thor_bench"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/9"

TENANT = "bench"
SPA = "http://localhost:5173"
EMAIL = "bench@thor.local"
PASSWORD = "bench-passphrase-42"
# The sandbox's demo Kite app (run_broker_sandbox registers it with Thor's callback as its redirect URL).
KITE_API_KEY = "thor_demo_key"
KITE_API_SECRET = "thor_demo_secret"
KITE_USER, KITE_PASSWORD = "AB1234", "sandbox"


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the `with` blocks stop the child servers (Ctrl-C already does)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def free_port() -> int:
    # The kernel picks an unused port; a race with another process in the next second is possible but harmless here.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    """Child servers, each in its own session so that stopping it stops its workers too."""

    def __init__(self):
        self.log_dir = Path(tempfile.mkdtemp(prefix="thor-bench-"))
        self._children: list[subprocess.Popen] = []

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            child = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        child.name = name
        self._children.append(child)
        return child

    def wait_ready(self, child: subprocess.Popen, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.returncode}; see {self.log_dir / child.name}.log")
            try:
                requests.get(url, timeout=5)
                return
            except (requests.ConnectionError, requests.Timeout):
                # Not listening yet, or listening while its workers still start (slow on a busy machine).
                time.sleep(0.2)
        raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f} s")

    def stop(self, child: subprocess.Popen) -> None:
        """Stop one child (and its workers) before the run ends: the next server gets the CPU to itself."""
        _signal_group(child, signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait()
        _signal_group(child, signal.SIGKILL)
        self._children.remove(child)

    def stop_all(self) -> None:
        for child in self._children:
            _signal_group(child, signal.SIGTERM)
        for child in self._children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait()
            # uvicorn workers outlive a main process that died hard; the group still names them.
            _signal_group(child, signal.SIGKILL)
        self._children.clear()


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


# The candidate servers, each with 2 workers (or --workers), and how each is started. Thor goes through
# `python -m thor.serve` (the shipped command) where the server is one it ships; gunicorn is measured only.
SERVERS = ("uvicorn", "gunicorn", "granian")
SHIPPED_SERVER = "granian"


def server_argv(server: str, *, app: str, port: int, workers: int) -> list[str]:
    """`app` is "thor" (Thor, as production starts it) or "minimal" (bench/minimal_drf.py, the framework's floor)."""
    bind = ["--host", "127.0.0.1", "--port", str(port)]
    quiet = ["--log-level", "warning"]
    if app == "thor" and server in ("uvicorn", "granian"):
        return [PYTHON, "-m", "thor.serve", "--server", server, *bind, "--workers", str(workers), *quiet]
    if server == "uvicorn":
        target = "bench.minimal_drf:asgi"
        return [PYTHON, "-m", "uvicorn", target, *bind, "--workers", str(workers), "--no-access-log", *quiet]
    target = "thor.serve:wsgi_application" if app == "thor" else "bench.minimal_drf:wsgi"
    if server == "gunicorn":
        return [PYTHON, "-m", "gunicorn", target, "-b", f"127.0.0.1:{port}", "-w", str(workers), *quiet]
    if server == "granian":
        threads = ["--blocking-threads", str(GRANIAN_BLOCKING_THREADS)]  # as thor.serve runs it
        return [
            PYTHON,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            *bind,
            "--workers",
            str(workers),
            "--no-ws",
            *threads,
            target,
        ]
    raise ValueError(server)


@dataclass
class World:
    thor_url: str
    sandbox_url: str
    token: str
    account_id: int
    workers: int
    server: str = "uvicorn"
    env: dict = field(default_factory=dict)
    thor: subprocess.Popen | None = None


def bench_env(
    *,
    database_url: str = DATABASE_URL,
    redis_url: str = REDIS_URL,
    settings_module: str = "bench.settings",
    **overrides: str,
) -> dict:
    """The environment of a benchmark's Thor processes: its own database and Redis DB, production-like."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # No Celery broker unless the benchmark runs workers: nothing in these reads queues a task.
        "CELERY_BROKER_URL": "",
        # Production-like: no DEBUG query log, no access log lines in the hot path.
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


def reset_storage(env: dict) -> None:
    """The env's database dropped, made and migrated again, and its Redis DB flushed."""
    database = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {database}")
    manage(env, "migrate", "--noinput", "-v0")
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()


def manage(env: dict, *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)


def start_server(processes: Processes, server: str, *, app: str, workers: int, env: dict) -> tuple:
    """(the child, its URL) once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = processes.start(f"{app}-{server}", server_argv(server, app=app, port=port, workers=workers), env)
    processes.wait_ready(child, f"{url}/api/health/" if app == "thor" else f"{url}/api/bench/minimal")
    return child, url


def switch_thor_server(processes: Processes, world: World, server: str) -> None:
    """Serve the same world (database, cache, user, token) with another server."""
    if world.thor is not None:
        processes.stop(world.thor)
    world.thor, world.thor_url = start_server(processes, server, app="thor", workers=world.workers, env=world.env)
    world.server = server


def live_world(
    processes: Processes,
    *,
    workers: int,
    fresh_seconds: float,
    server: str = "uvicorn",
    database_url: str = DATABASE_URL,
    redis_url: str = REDIS_URL,
    **overrides: str,
) -> World:
    """A fresh database, the sandbox, Thor, and a user whose primary account is a linked Kite account.

    `overrides`: more environment for the sandbox and Thor (a benchmark's own settings)."""
    thor_url = f"http://127.0.0.1:{free_port()}"
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = bench_env(
        database_url=database_url,
        redis_url=redis_url,
        THOR_PUBLIC_URL=thor_url,
        THOR_KITE_API_ROOT=sandbox_url,
        THOR_KITE_LOGIN_URL=f"{sandbox_url}/connect/login",
        # The sandbox stands in for Schwab too (a benchmark links a Schwab account only if it wants one).
        THOR_SCHWAB_API_BASE=sandbox_url,
        THOR_SCHWAB_AUTH_BASE=sandbox_url,
        THOR_SANDBOX_KITE_API_KEY=KITE_API_KEY,
        THOR_SANDBOX_KITE_API_SECRET=KITE_API_SECRET,
        THOR_LIVE_FRESH_SECONDS=str(fresh_seconds),
        **overrides,
    )
    reset_storage(env)
    manage(env, "create_tenant", TENANT, "--origin", SPA)
    # Kite orders go straight to the sandbox, as before the static-IP rule: a bench measures Thor, not a proxy hop.
    code = f"from identity.models import Tenant; Tenant.objects.filter(slug='{TENANT}').update(live_orders_require_egress=False)"
    manage(env, "shell", "-c", code)

    sandbox = processes.start("sandbox", [PYTHON, "manage.py", "run_broker_sandbox", "--port", str(sandbox_port)], env)
    thor_port = urlsplit(thor_url).port
    thor = processes.start("thor", server_argv(server, app="thor", port=thor_port, workers=workers), env)
    processes.wait_ready(sandbox, f"{sandbox_url}/_sandbox/stats")
    processes.wait_ready(thor, f"{thor_url}/api/health/")

    token = _register(thor_url)
    account_id = _link_kite_account(thor_url, token)
    response = requests.patch(
        f"{thor_url}/api/accounts/{account_id}", json={"primary": True}, headers=_bearer(token), timeout=10
    )
    response.raise_for_status()
    return World(
        thor_url=thor_url,
        sandbox_url=sandbox_url,
        token=token,
        account_id=account_id,
        workers=workers,
        server=server,
        env=env,
        thor=thor,
    )


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _register(thor_url: str) -> str:
    body = {"email": EMAIL, "password": PASSWORD, "tenant": TENANT}
    response = requests.post(f"{thor_url}/api/auth/register/", json=body, timeout=30)
    response.raise_for_status()
    response = requests.post(f"{thor_url}/api/auth/token/", json={"email": EMAIL, "password": PASSWORD}, timeout=30)
    response.raise_for_status()
    return response.json()["access"]


def _link_kite_account(thor_url: str, token: str) -> int:
    """The browser's part of the Kite OAuth flow, over HTTP: Thor's start, the sandbox login form, Thor's callback."""
    start = requests.post(
        f"{thor_url}/api/auth/broker/test-oauth",
        json={"api_key": KITE_API_KEY, "api_secret": KITE_API_SECRET, "frontend_url": SPA},
        headers=_bearer(token),
        timeout=10,
    )
    start.raise_for_status()
    login = submit_login(start.json()["oauth_url"], user_id=KITE_USER, password=KITE_PASSWORD)
    if login.status_code != 302:
        raise RuntimeError(f"Sandbox login answered {login.status_code}: {login.text[:200]}")
    callback = requests.get(login.headers["Location"], allow_redirects=False, timeout=30)
    spa = parse_qs(urlsplit(callback.headers.get("Location", "")).query)
    if spa.get("status") != ["success"]:
        raise RuntimeError(f"Thor's Kite callback did not link the account: {callback.status_code} {spa}")
    accounts = requests.get(f"{thor_url}/api/accounts", headers=_bearer(token), timeout=10).json()
    return next(account["id"] for account in accounts if account["mode"] == "live")
