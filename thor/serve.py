"""`python -m thor.serve --host H --port P`: uvicorn serving Thor, with the proxy trust from settings.

Every place that starts the web server (scripts/run_embedded.sh, the Dockerfile, docker-compose.yml)
goes through here. Left to itself uvicorn believes X-Forwarded-For from 127.0.0.1, so behind no proxy
(or a proxy on another address) any local client could choose its own address and with it a fresh
per-IP throttle bucket. Here the trusted peers are THOR_FORWARDED_ALLOW_IPS and nothing else.
"""

import os
import sys

# Options that would override the trust decided in settings.
_PROXY_OPTIONS = ("--proxy-headers", "--no-proxy-headers", "--forwarded-allow-ips")


def uvicorn_arguments(extra: list[str]) -> list[str]:
    from django.conf import settings

    for argument in extra:
        if argument.split("=", 1)[0] in _PROXY_OPTIONS:
            raise SystemExit(f"{argument}: set THOR_FORWARDED_ALLOW_IPS instead (see .env.example).")
    allowed = settings.THOR_FORWARDED_ALLOW_IPS
    proxy = ["--proxy-headers", "--forwarded-allow-ips", ",".join(allowed)] if allowed else ["--no-proxy-headers"]
    # No access log: seed 000's routes take api_secret in the query string (see brokers/api/views.py).
    return ["thor.asgi:application", "--no-access-log", *proxy, *extra]


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thor.settings")
    # uvicorn's own command line, in this process: signals from the container runtime reach it directly.
    from uvicorn.main import main as uvicorn_main

    uvicorn_main(args=uvicorn_arguments(argv), prog_name="uvicorn")


if __name__ == "__main__":
    main(sys.argv[1:])
