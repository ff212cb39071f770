"""The shipped server commands: uvicorn and granian believe forwarded headers only from THOR_FORWARDED_ALLOW_IPS.

Each case starts a real server on a free port, as `make run` and the containers do, and spends the
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

from thor.serve import (
    RequestBodyLimitWSGI,
    build_wsgi_application,
    granian_arguments,
    trusting_proxies,
    uvicorn_arguments,
)

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def started_thor(server="uvicorn", **variables):
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
    command = ["-m", "thor.serve", "--server", server, "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, *command, "--log-level", "warning"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read())
        try:
            # Any answer will do (a degraded health is a 503): the app and its URLs are loaded. Not the
            # schema, which each probe would build anew.
            requests.get(f"{url}/api/health", timeout=5)
            return process, url
        except (requests.ConnectionError, requests.Timeout):  # a read timeout on a busy machine is "not yet"
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"{server} did not start")


@pytest.fixture(scope="class", params=["uvicorn", "granian"])
def server(request):
    return request.param


def stopped(process) -> None:
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def thor_server(request, server):
    process, url = started_thor(server, **getattr(request, "param", {}))
    yield url
    stopped(process)


@pytest.fixture(scope="class")
def thor_server_as_shipped(server):
    """One server of each kind with the shipped defaults for the cases that share it: a start costs more
    than the cases. Only one of them spends the login budget (the 413 comes before any throttle)."""
    process, url = started_thor(server)
    yield url
    stopped(process)


def login_attempt(url, **headers):
    return requests.post(f"{url}/api/auth/token/", json={}, headers=headers, timeout=5).status_code


class TestShippedCommand:
    def test_a_spoofed_forwarded_for_gets_no_fresh_bucket(self, thor_server_as_shipped):
        url = thor_server_as_shipped
        spent = [login_attempt(url) for _ in range(3)]

        assert spent == [400, 400, 429]
        assert login_attempt(url, **{"X-Forwarded-For": "203.0.113.7"}) == 429
        assert login_attempt(url, **{"X-Forwarded-For": "203.0.113.8, 127.0.0.1"}) == 429
        assert login_attempt(url, Forwarded="for=203.0.113.9") == 429

    def test_a_body_over_the_cap_is_refused_unread(self, thor_server_as_shipped):
        response = requests.post(
            f"{thor_server_as_shipped}/api/auth/register/",
            data=b"{" + b" " * (1024 * 1024 + 1) + b"}",
            headers={"Content-Type": "application/json"},
            timeout=10,
        )

        assert response.status_code == 413 and response.json()["code"] == "request_too_large"

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
        with pytest.raises(SystemExit, match="THOR_FORWARDED_ALLOW_IPS"):
            granian_arguments([option])

    def test_granian_serves_thors_wsgi_app_without_websockets_or_access_log(self):
        arguments = granian_arguments(["--workers", "2"])

        assert arguments[-1] == "thor.serve:wsgi_application"
        assert arguments[arguments.index("--interface") + 1] == "wsgi"
        assert "--no-ws" in arguments and "--no-access-log" in arguments and "--workers" in arguments

    @pytest.mark.parametrize("option", ["--interface=asgi", "--interface", "--factory", "--working-dir=/tmp"])
    def test_granian_serves_nothing_else(self, option):
        with pytest.raises(SystemExit, match="WSGI application only"):
            granian_arguments([option])

    @pytest.mark.parametrize("option", ["--access-log", "--access-log-fmt=%(path)s", "--log-config=x.json"])
    def test_no_access_log_and_no_other_logging_than_thors(self, option):
        # Query strings carry tickets and OAuth codes; Thor's handler redacts them, an access logger would not.
        for arguments in (uvicorn_arguments, granian_arguments):
            with pytest.raises(SystemExit, match=r"settings\.LOGGING"):
                arguments([option])

    def test_a_stop_is_bounded_by_thor_shutdown_seconds(self, settings):
        settings.THOR_SHUTDOWN_SECONDS = 7

        uvicorn = uvicorn_arguments([])
        granian = granian_arguments([])

        assert uvicorn[uvicorn.index("--timeout-graceful-shutdown") + 1] == "7"
        assert granian[granian.index("--workers-kill-timeout") + 1] == "7"

    def test_the_command_line_may_choose_another_bound(self):
        uvicorn = uvicorn_arguments(["--timeout-graceful-shutdown=3"])
        granian = granian_arguments(["--workers-kill-timeout", "3"])

        assert "--timeout-graceful-shutdown=3" in uvicorn and "--timeout-graceful-shutdown" not in uvicorn
        assert (
            granian.count("--workers-kill-timeout") == 1 and granian[granian.index("--workers-kill-timeout") + 1] == "3"
        )

    def test_websocket_compression_is_off_unless_thor_ws_compression_or_the_command_line_says(self, settings):
        assert "--ws-per-message-deflate" in uvicorn_arguments([])
        off = uvicorn_arguments([])
        assert off[off.index("--ws-per-message-deflate") + 1] == "false"
        settings.THOR_WS_COMPRESSION = True
        on = uvicorn_arguments([])
        assert on[on.index("--ws-per-message-deflate") + 1] == "true"
        chosen = uvicorn_arguments(["--ws-per-message-deflate=false"])
        assert [argument for argument in chosen if argument.startswith("--ws-per")] == [
            "--ws-per-message-deflate=false"
        ]

    def test_an_unknown_server_is_refused(self):
        from thor.serve import main

        with pytest.raises(SystemExit, match="--server must be one of"):
            main(["--server", "gunicorn"])


def _seen_by_thor(trusted, remote, **headers):
    """REMOTE_ADDR and the URL scheme as the WSGI app behind granian's proxy-headers wrapper sees them."""
    seen = {}

    def application(environ, start_response):
        seen.update(address=environ["REMOTE_ADDR"], scheme=environ["wsgi.url_scheme"])
        return [b""]

    environ = {"REMOTE_ADDR": remote, "wsgi.url_scheme": "http", **headers}
    trusting_proxies(application, trusted)(environ, lambda *args: None)
    return seen["address"], seen["scheme"]


class TestTheWsgiApplication:
    def test_starts_with_what_is_alive_out_of_the_collectors_sight(self):
        import gc

        gc.unfreeze()
        application = build_wsgi_application()

        # granian's proxy-headers wrapper (functools.wraps keeps what it wraps) around Thor's body cap.
        assert isinstance(application.__wrapped__, RequestBodyLimitWSGI)
        assert gc.get_freeze_count() > 0
        gc.unfreeze()


class TestBodyLimitUnderWsgi:
    def _answer(self, content_length):
        started = {}

        def application(environ, start_response):
            start_response("200 OK", [])
            return [b"read"]

        environ = {} if content_length is None else {"CONTENT_LENGTH": content_length}
        body = RequestBodyLimitWSGI(application, 100)(environ, lambda status, headers: started.update(status=status))
        return started["status"], b"".join(body)

    @pytest.mark.parametrize("length", [None, "", "0", "100", "not-a-number", "-5"])
    def test_within_the_cap_or_undeclared_goes_through(self, length):
        assert self._answer(length) == ("200 OK", b"read")

    @pytest.mark.parametrize("length", ["101", str(10**12)])
    def test_over_the_cap_is_413_json(self, length):
        status, body = self._answer(length)

        assert status.startswith("413") and b'"request_too_large"' in body


class TestForwardedForUnderWsgi:
    def test_an_untrusted_peer_is_the_client_whatever_it_sends(self):
        headers = {"HTTP_X_FORWARDED_FOR": "203.0.113.7", "HTTP_X_FORWARDED_PROTO": "https"}

        assert _seen_by_thor([], "127.0.0.1", **headers) == ("127.0.0.1", "http")
        assert _seen_by_thor(["10.0.0.5"], "127.0.0.1", **headers) == ("127.0.0.1", "http")

    def test_a_trusted_proxy_names_the_client(self):
        headers = {"HTTP_X_FORWARDED_FOR": "203.0.113.7", "HTTP_X_FORWARDED_PROTO": "https"}

        assert _seen_by_thor(["10.0.0.5"], "10.0.0.5", **headers) == ("203.0.113.7", "https")
        assert _seen_by_thor(["10.1.0.0/16"], "10.1.2.3", **headers) == ("203.0.113.7", "https")

    def test_what_the_client_prepended_is_ignored(self):
        # The client sent "X-Forwarded-For: 198.51.100.1"; the proxy appended the address it saw.
        headers = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.7"}

        assert _seen_by_thor(["10.0.0.5"], "10.0.0.5", **headers)[0] == "203.0.113.7"

    def test_a_chain_of_trusted_proxies_is_walked_back(self):
        headers = {"HTTP_X_FORWARDED_FOR": "203.0.113.7, 10.0.0.6"}

        assert _seen_by_thor(["10.0.0.0/24"], "10.0.0.5", **headers)[0] == "203.0.113.7"

    @pytest.mark.parametrize("value", ["", " , "])
    def test_nothing_usable_changes_nothing(self, value):
        headers = {"HTTP_X_FORWARDED_FOR": value, "HTTP_X_FORWARDED_PROTO": value}

        assert _seen_by_thor(["10.0.0.5"], "10.0.0.5", **headers) == ("10.0.0.5", "http")

    @pytest.mark.parametrize("value", ["ftp", "javascript", "HTTPS"])
    def test_only_http_or_https_is_a_scheme(self, value):
        headers = {"HTTP_X_FORWARDED_FOR": "203.0.113.7", "HTTP_X_FORWARDED_PROTO": value}

        assert _seen_by_thor(["10.0.0.5"], "10.0.0.5", **headers) == ("203.0.113.7", "http")

    def test_a_network_as_the_setting_accepts_it(self):
        # THOR_FORWARDED_ALLOW_IPS accepts 10.0.0.5/8 for 10.0.0.0/8 (as uvicorn does); granian reads it strictly.
        assert _seen_by_thor(["10.0.0.5/8"], "10.9.9.9", HTTP_X_FORWARDED_FOR="203.0.113.7")[0] == "203.0.113.7"

    def test_everyone_trusted_with_a_star(self):
        assert _seen_by_thor(["*"], "192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.7")[0] == "203.0.113.7"

    def test_a_garbage_peer_address_is_not_trusted(self):
        assert _seen_by_thor(["10.0.0.0/8"], "not-an-ip", HTTP_X_FORWARDED_FOR="203.0.113.7")[0] == "not-an-ip"


LAUNCHERS = ["scripts/run_embedded.sh", "Dockerfile", "docker-compose.yml"]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_every_launcher_starts_the_server_through_thor_serve(launcher):
    text = (ROOT / launcher).read_text()

    assert "thor.serve" in text
    assert not re.search(r"uvicorn\s+thor\.asgi|-m uvicorn|\"uvicorn\"", text), "uvicorn started around thor.serve"
    commands = "\n".join(line.split("#", 1)[0] for line in text.splitlines()).replace("--server granian", "")
    assert not re.search(r"\b(granian|gunicorn)\b", commands), "a WSGI server started around thor.serve"


def test_the_compose_servers_trust_exactly_the_proxy_in_front_of_them():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    proxy_address = services["proxy"]["networks"]["thor"]["ipv4_address"]

    assert services["web"]["command"].startswith("python -m thor.serve --server granian ")
    assert services["ws"]["command"].startswith("python -m thor.serve ") and "--server" not in services["ws"]["command"]
    for name in ("web", "ws"):
        assert services[name]["environment"]["THOR_FORWARDED_ALLOW_IPS"] == proxy_address, name
        assert "ports" not in services[name], f"{name} is reached through the proxy only"


def test_the_proxy_sends_websockets_to_uvicorn_and_overwrites_forwarded_headers():
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    ws = config[config.index("location /ws/") : config.index("location / ")]

    assert "proxy_pass http://thor_ws;" in ws and "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "server ws:8001;" in config and "server web:8000;" in config
    # $remote_addr, never $proxy_add_x_forwarded_for: what a client sends is not passed on as if it were true.
    assert config.count("proxy_set_header X-Forwarded-For $remote_addr;") == 2
    assert "proxy_add_x_forwarded_for" not in config


def test_the_proxy_logs_no_query_string_and_keeps_metrics_inside():
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    log_format = re.search(r"log_format (\w+)(.*?);", config, re.S)

    assert log_format and re.search(rf"^\s*access_log \S+ {log_format[1]};", config, re.M)
    # Every variable that carries the query (or a page URL that had one) stays out of the line.
    assert "$uri" in log_format[2]
    for variable in ("$request ", '$request"', "$request_uri", "$args", "$query_string", "$arg_", "$http_referer"):
        assert variable not in log_format[2], variable
    assert re.search(r"location \^~ /metrics \{\s*deny all;\s*\}", config)


def test_docker_waits_longer_than_the_servers_shutdown_bound():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]

    for name in ("web", "ws"):
        assert int(services[name]["stop_grace_period"].rstrip("s")) > settings.THOR_SHUTDOWN_SECONDS, name
