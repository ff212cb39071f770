"""`python -m thor.serve [--server uvicorn|granian] --host H --port P`: Thor's web server, with the proxy trust from settings.

Every place that starts a web server (scripts/run_embedded.sh, the Dockerfile, docker-compose.yml)
goes through here. Two servers, chosen by measurement (bench/README.md):

- `uvicorn` (the default; `make run`): Thor's ASGI application, HTTP and the WebSockets under /ws/.
- `granian`: Thor's WSGI application for HTTP (/api/, /admin/, /metrics): Thor's views are sync, and
  under ASGI every request hops to a thread and back; under a WSGI server it runs where it arrived.
  Production serves /ws/ with uvicorn beside it, one origin through the proxy (docker-compose.yml).

Left to itself uvicorn believes X-Forwarded-For from 127.0.0.1, so behind no proxy (or a proxy on
another address) any local client could choose its own address and with it a fresh per-IP throttle
bucket; granian believes no forwarded header at all, so behind a proxy every client would share the
proxy's bucket. Here the trusted peers are THOR_FORWARDED_ALLOW_IPS and nothing else, for both:
uvicorn through its own options, granian through its own proxy-headers wrapper (`trusting_proxies`).
The body cap (THOR_MAX_REQUEST_BYTES) holds under both too: thor.bodylimit under ASGI, `RequestBodyLimitWSGI` here.
Both stop within THOR_SHUTDOWN_SECONDS of a SIGTERM, and neither writes an access log (see _ACCESS_LOG_OPTIONS).
"""

import gc
import ipaddress
import json
import os
import sys

SERVERS = ("uvicorn", "granian")
# Options that would override the trust decided in settings.
_PROXY_OPTIONS = ("--proxy-headers", "--no-proxy-headers", "--forwarded-allow-ips")
# The access logs stay off: query strings carry tickets, OAuth codes and seed 000's api_secret, and the proxy
# logs requests without them (deploy/nginx.conf). The servers' other lines go through Thor's redacting
# handler (settings.LOGGING); an access logger turned on would keep its own handler and print them raw.
_ACCESS_LOG_OPTIONS = ("--access-log", "--access-log-fmt", "--log-config")
# Options that would serve something other than Thor's WSGI application through its proxy trust.
_GRANIAN_FIXED_OPTIONS = ("--interface", "--factory", "--working-dir")
# The WSGI application's import path for granian (built on first access: see __getattr__).
WSGI_TARGET = "thor.serve:wsgi_application"
# Threads per granian worker running the WSGI app. Two cover a wait on Redis or PostgreSQL; more only contend
# for the GIL (and each may hold a database connection from the pool): with 4, cached reads ran slower and
# with a longer tail (bench/README.md). A request waiting on a broker holds
# its thread: where many do at once, run more workers, or pass `--blocking-threads N` to thor.serve.
GRANIAN_BLOCKING_THREADS = 2


def _refuse_proxy_options(extra: list[str]) -> None:
    for argument in extra:
        option = argument.split("=", 1)[0]
        if option in _PROXY_OPTIONS:
            raise SystemExit(f"{argument}: set THOR_FORWARDED_ALLOW_IPS instead (see .env.example).")
        if option in _ACCESS_LOG_OPTIONS:
            raise SystemExit(f"{argument}: Thor's servers log through settings.LOGGING, without access logs.")


def _given(extra: list[str], option: str) -> bool:
    return any(argument.split("=", 1)[0] == option for argument in extra)


def _bounded_shutdown(extra: list[str], option: str) -> list[str]:
    """`option THOR_SHUTDOWN_SECONDS` unless the command line sets it: a stop never waits on a socket for ever."""
    from django.conf import settings

    if _given(extra, option):
        return []
    return [option, str(settings.THOR_SHUTDOWN_SECONDS)]


def uvicorn_arguments(extra: list[str]) -> list[str]:
    from django.conf import settings

    _refuse_proxy_options(extra)
    allowed = settings.THOR_FORWARDED_ALLOW_IPS
    proxy = ["--proxy-headers", "--forwarded-allow-ips", ",".join(allowed)] if allowed else ["--no-proxy-headers"]
    # No access log: seed 000's routes take api_secret in the query string (see brokers/api/views.py).
    shutdown = _bounded_shutdown(extra, "--timeout-graceful-shutdown")
    # Per-message deflate as THOR_WS_COMPRESSION says (uvicorn's default is on), unless the command line says.
    deflate = "--ws-per-message-deflate"
    compression = [] if _given(extra, deflate) else [deflate, str(settings.THOR_WS_COMPRESSION).lower()]
    return ["thor.asgi:application", "--no-access-log", *proxy, *shutdown, *compression, *extra]


def granian_arguments(extra: list[str]) -> list[str]:
    _refuse_proxy_options(extra)
    for argument in extra:
        if argument.split("=", 1)[0] in _GRANIAN_FIXED_OPTIONS:
            raise SystemExit(f"{argument}: thor.serve runs granian on Thor's WSGI application only.")
    threads = (
        []
        if any(a.startswith("--blocking-threads") for a in extra)
        else ["--blocking-threads", str(GRANIAN_BLOCKING_THREADS)]
    )
    # WebSockets are uvicorn's (the ASGI app); the access log stays off for the same reason as uvicorn's.
    shutdown = _bounded_shutdown(extra, "--workers-kill-timeout")
    return ["--interface", "wsgi", "--no-ws", "--no-access-log", *threads, *shutdown, *extra, WSGI_TARGET]


def trusting_proxies(application, trusted: list[str]):
    """WSGI: granian's own proxy-headers wrapper around `application`, believing only `trusted` (addresses,
    networks or `*`, THOR_FORWARDED_ALLOW_IPS). Its rule is uvicorn's: the client is the right-most
    X-Forwarded-For entry that is not itself a trusted proxy, and the scheme is X-Forwarded-Proto's when it
    is http or https. Nothing trusted: nothing believed."""
    from granian.utils.proxies import wrap_wsgi_with_proxy_headers

    if "*" in trusted:
        return wrap_wsgi_with_proxy_headers(application, "*")
    # granian reads a network strictly; the setting accepts 10.0.0.5/8 for 10.0.0.0/8, as uvicorn does.
    networks = [str(ipaddress.ip_network(value, strict=False)) if "/" in value else value for value in trusted]
    return wrap_wsgi_with_proxy_headers(application, networks)


class RequestBodyLimitWSGI:
    """WSGI: a `Content-Length` over THOR_MAX_REQUEST_BYTES answers 413 unread, as thor.bodylimit does under ASGI.

    Django's own DATA_UPLOAD_MAX_MEMORY_SIZE does not count multipart files, which it streams to disk.
    A body without a length (chunked) is not read by Django's WSGI handler at all, so the length is the cap.
    """

    def __init__(self, application, max_bytes: int):
        self.application = application
        self.max_bytes = max_bytes

    def __call__(self, environ, start_response):
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > self.max_bytes:
            from thor.errors import error_body  # Django is set up by now; not on `import thor.serve`

            body = json.dumps(error_body("Request body too large.", 413, "request_too_large")).encode()
            start_response(
                "413 Request Entity Too Large",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self.application(environ, start_response)


def build_wsgi_application():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thor.settings")
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.urls import get_resolver

    application = RequestBodyLimitWSGI(get_wsgi_application(), settings.THOR_MAX_REQUEST_BYTES)
    # Every view imported now (Django loads the URLconf on the first request otherwise), then what is alive
    # at start moved out of the collector's sight: a full collection scans what requests allocated, not
    # every module, model and view, and so no longer shows in the p99 (bench/README.md).
    get_resolver().url_patterns  # noqa: B018
    gc.freeze()
    return trusting_proxies(application, settings.THOR_FORWARDED_ALLOW_IPS)


_built: dict[str, object] = {}


def __getattr__(name):
    # granian imports WSGI_TARGET in each worker; Django is set up there, on first access, not on `import thor.serve`.
    if name == "wsgi_application":
        if name not in _built:
            _built[name] = build_wsgi_application()
        return _built[name]
    raise AttributeError(name)


def _split_server(argv: list[str]) -> tuple[str, list[str]]:
    server, rest, arguments = "uvicorn", [], iter(argv)
    for argument in arguments:
        if argument == "--server":
            server = next(arguments, "")
        elif argument.startswith("--server="):
            server = argument.split("=", 1)[1]
        else:
            rest.append(argument)
    if server not in SERVERS:
        raise SystemExit(f"--server must be one of {', '.join(SERVERS)}, not {server!r}.")
    return server, rest


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thor.settings")
    server, extra = _split_server(argv)
    # Each server's own command line, in this process: signals from the container runtime reach it directly.
    if server == "granian":
        from granian.cli import cli as granian_main

        granian_main.main(args=granian_arguments(extra), prog_name="granian")
        return
    from uvicorn.main import main as uvicorn_main

    uvicorn_main(args=uvicorn_arguments(extra), prog_name="uvicorn")


if __name__ == "__main__":
    main(sys.argv[1:])
