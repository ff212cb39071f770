"""The shipped server command: uvicorn believes forwarded headers only from THOR_FORWARDED_ALLOW_IPS.

Each case starts a real uvicorn on a free port, as `make run` and the container do, and spends the
login throttle's budget from 127.0.0.1; a spoofed X-Forwarded-For must not get a fresh bucket.
"""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from thor.serve import uvicorn_arguments

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def started_thor(**variables):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("THOR_")}
    environment.update(
        DJANGO_SETTINGS_MODULE="thor.settings",
        # The login throttle answers before any database work, so the embedded defaults will do.
        DATABASE_URL="",
        REDIS_URL="",
        CELERY_BROKER_URL="",
        THOR_ENV="",
        THOR_EMBEDDED_SCHEDULER="false",
        THOR_LOGIN_RATE="2/min",
        **variables,
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "thor.serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read())
        try:
            requests.get(f"{url}/api/schema/", timeout=5)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("uvicorn did not start")


@pytest.fixture
def thor_server(request):
    process, url = started_thor(**getattr(request, "param", {}))
    yield url
    process.terminate()
    process.wait(timeout=10)


def login_attempt(url, **headers):
    return requests.post(f"{url}/api/auth/token/", json={}, headers=headers, timeout=5).status_code


class TestShippedCommand:
    def test_a_spoofed_forwarded_for_gets_no_fresh_bucket(self, thor_server):
        spent = [login_attempt(thor_server) for _ in range(3)]

        assert spent == [400, 400, 429]
        assert login_attempt(thor_server, **{"X-Forwarded-For": "203.0.113.7"}) == 429
        assert login_attempt(thor_server, **{"X-Forwarded-For": "203.0.113.8, 127.0.0.1"}) == 429
        assert login_attempt(thor_server, Forwarded="for=203.0.113.9") == 429

    @pytest.mark.parametrize("thor_server", [{"THOR_FORWARDED_ALLOW_IPS": "127.0.0.1"}], indirect=True)
    def test_a_configured_proxy_is_believed(self, thor_server):
        for _ in range(3):
            login_attempt(thor_server)

        # 127.0.0.1 is the proxy now, so the address it forwards is the client's.
        assert login_attempt(thor_server, **{"X-Forwarded-For": "203.0.113.7"}) == 400


class TestArguments:
    def test_no_proxy_trusted_by_default(self, settings):
        settings.THOR_FORWARDED_ALLOW_IPS = []

        assert "--no-proxy-headers" in uvicorn_arguments([])
        assert "--forwarded-allow-ips" not in uvicorn_arguments([])

    def test_the_configured_proxies_only(self, settings):
        settings.THOR_FORWARDED_ALLOW_IPS = ["10.0.0.5", "10.1.0.0/16"]

        arguments = uvicorn_arguments(["--port", "9000"])

        assert arguments[arguments.index("--forwarded-allow-ips") + 1] == "10.0.0.5,10.1.0.0/16"
        assert "--proxy-headers" in arguments and "--no-access-log" in arguments

    @pytest.mark.parametrize("option", ["--proxy-headers", "--forwarded-allow-ips=*", "--no-proxy-headers"])
    def test_the_command_line_cannot_override_the_trust(self, option):
        with pytest.raises(SystemExit, match="THOR_FORWARDED_ALLOW_IPS"):
            uvicorn_arguments([option])


@pytest.mark.parametrize("launcher", ["scripts/run_embedded.sh", "Dockerfile", "docker-compose.yml"])
def test_every_launcher_starts_the_server_through_thor_serve(launcher):
    text = (ROOT / launcher).read_text()

    assert "thor.serve" in text
    assert not re.search(r"uvicorn\s+thor\.asgi|-m uvicorn|\"uvicorn\"", text), "uvicorn started around thor.serve"
