"""Thor's servers as `make run` and the containers start them (`python -m thor.serve`), on the test database:
what they log holds no token, ticket, OAuth code or secret from a query string, and a SIGTERM stops them
within THOR_SHUTDOWN_SECONDS even with a request in flight (issue 23, findings 7 and 11)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from websockets.sync.client import connect

from accounts.tests.test_streams_served import database_url, free_port
from identity.tokens import token_pair_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

ROOT = Path(settings.BASE_DIR)
SHUTDOWN_SECONDS = 1  # the least THOR_SHUTDOWN_SECONDS may be: a stop with a request in flight waits it out


class Served:
    """A server subprocess whose stdout and stderr go to a file, read once it has stopped."""

    def __init__(self, server: str, log_level: str, **variables: str):
        self.port = free_port()
        self.http, self.ws = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        self.output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (the server writes to it until close())
        environment = {key: value for key, value in os.environ.items() if not key.startswith("THOR_")}
        environment.update(
            DJANGO_SETTINGS_MODULE="thor.settings",
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            CELERY_BROKER_URL="",
            DEBUG="false",
            THOR_PUBLIC_URL=self.http,
            THOR_EMBEDDED_SCHEDULER="false",
            THOR_SHUTDOWN_SECONDS=str(SHUTDOWN_SECONDS),
            # Thor's own loggers as verbose as the servers' (the root level), so nothing hides below a threshold.
            LOG_LEVEL="DEBUG",
            **variables,
        )
        command = ["-m", "thor.serve", "--server", server, "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [sys.executable, *command, "--log-level", log_level],
            cwd=ROOT,
            env=environment,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_until_answering(server)
        except BaseException:
            self.close()
            raise

    def _wait_until_answering(self, server: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log()
            try:
                requests.get(f"{self.http}/api/health/", timeout=2)
                return
            # A busy machine may be slow to answer the first request too: a read timeout is "not yet".
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, f"{server} did not start within 60 s"
                time.sleep(0.2)

    def stop(self) -> float:
        """SIGTERM, as `docker stop` and Ctrl+C send; the seconds until the server exited."""
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=SHUTDOWN_SECONDS + 15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        return time.monotonic() - started

    def log(self) -> str:
        self.output.seek(0)
        return self.output.read()

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.output.close()


@pytest.fixture
def start_server():
    started = []

    def start(server: str, log_level: str, **variables: str) -> Served:
        started.append(Served(server, log_level, **variables))
        return started[-1]

    yield start
    for served in started:
        served.close()


SECRET_CODE, SECRET_STATE = "SECRETcode4x7Q@", "SECRETstate9Zp"
SECRET_REQUEST_TOKEN, SECRET_API = "SECRETrequest3Kt", "SECRETapi5Vw"


def visit_oauth_callbacks(http: str) -> None:
    """What a browser sends after a broker's or provider's login: each callback with its code and state."""
    for path in (
        f"/api/schwab/oauth/callback/?code={SECRET_CODE}&state={SECRET_STATE}",
        f"/api/auth/broker/callback?action=login&type=login&status=success&request_token={SECRET_REQUEST_TOKEN}"
        f"&state={SECRET_STATE}",
        f"/api/demo/v1/auth/oauth/google/callback?code={SECRET_CODE}&state={SECRET_STATE}",
        f"/api/auth/broker/test-oauth?api_key=k&api_secret={SECRET_API}",
    ):
        answer = requests.get(f"{http}{path}", allow_redirects=False, timeout=10)
        assert answer.status_code < 500, (path, answer.status_code)


def secrets_in(log: str, *secrets: str) -> list[str]:
    return [secret for secret in secrets if secret in log]


@pytest.mark.parametrize("log_level", ["info", "trace"])
def test_uvicorn_logs_no_token_ticket_or_code(start_server, alice, log_level):
    """info: the compose `ws` service's level, which logs every handshake; trace: everything uvicorn can log."""
    served = start_server("uvicorn", log_level)
    access = token_pair_for(alice)["access"]
    ticket = requests.post(f"{served.http}/api/ws/ticket", headers={"Authorization": f"Bearer {access}"}, timeout=10)
    assert ticket.status_code == 201, ticket.text
    ticket = ticket.json()["ticket"]
    another_ticket = requests.post(
        f"{served.http}/api/ws/ticket", headers={"Authorization": f"Bearer {access}"}, timeout=10
    ).json()["ticket"]

    for url, subprotocols in (
        (f"{served.ws}/ws/orders/primary?ticket={ticket}", None),
        (f"{served.ws}/ws/orders/primary", ["ticket", another_ticket]),
        (f"{served.ws}/ws/orders/primary?token={access}", None),
        (f"{served.ws}/ws/orders/primary", ["bearer", access]),
    ):
        with connect(url, subprotocols=subprotocols, open_timeout=10) as socket_:
            socket_.recv(timeout=10)
    visit_oauth_callbacks(served.http)
    served.stop()

    log = served.log()
    # The handshakes were logged, so the greps below looked at lines that name them.
    assert "/ws/orders/primary?ticket=[redacted]" in log and "/ws/orders/primary?token=[redacted]" in log
    # `--no-access-log` holds: the access logger keeps no handler and does not reach Thor's.
    assert '"logger": "uvicorn.access"' not in log
    assert (
        secrets_in(log, access, ticket, another_ticket, SECRET_CODE, SECRET_STATE, SECRET_REQUEST_TOKEN, SECRET_API)
        == []
    )


def test_at_make_runs_level_uvicorn_logs_no_request_at_all(start_server):
    served = start_server("uvicorn", "warning")

    visit_oauth_callbacks(served.http)
    served.stop()

    assert "/api/" not in served.log()


def test_granian_logs_no_code(start_server):
    served = start_server("granian", "debug")

    visit_oauth_callbacks(served.http)
    served.stop()

    log = served.log()
    assert secrets_in(log, SECRET_CODE, SECRET_STATE, SECRET_REQUEST_TOKEN, SECRET_API) == []


def hold_a_request_open(served: Served) -> socket.socket:
    """A request whose body is still coming: a server that waits for it to finish would wait for ever."""
    client = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    client.sendall(
        b"POST /api/auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    time.sleep(0.5)  # in the server's hands before the stop
    return client


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_a_stop_ends_within_the_shutdown_bound_with_a_request_in_flight(start_server, server):
    served = start_server(server, "warning")
    client = hold_a_request_open(served)

    try:
        took = served.stop()
    finally:
        client.close()

    assert served.process.returncode is not None
    assert took < SHUTDOWN_SECONDS + 5, served.log()[-2000:]
