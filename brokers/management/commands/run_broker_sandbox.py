"""Run the local broker sandbox (fake Kite Connect and Schwab, and the identity providers) until interrupted."""

import json
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from brokers.sandbox import DEMO_USERS, Fault, KiteApp, SandboxServer
from brokers.sandbox.egress_proxy import EgressProxy


class Command(BaseCommand):
    help = "Run the local broker sandbox: fake Kite Connect and Schwab APIs with login pages and demo users."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--small-universe",
            action="store_true",
            help="List only the fixtures and the NIFTY/BANKNIFTY chain, not the whole market (~100,000 rows).",
        )
        parser.add_argument(
            "--ticker-seconds",
            type=float,
            default=1.0,
            help="How often Kite's ticker (/ws) sends each connection its subscribed instruments (default 1 s).",
        )
        parser.add_argument(
            "--kite-ip-whitelist",
            action="append",
            default=[],
            metavar="IP",
            help="A static IP the demo Kite app takes orders from (repeat for more); none: orders from anywhere.",
        )
        parser.add_argument(
            "--egress-proxy",
            default="",
            metavar="HOST:PORT",
            help="Also run a user's static-IP proxy there (say 127.0.0.2:8101), for Thor's order egress.",
        )

    def handle(
        self,
        *args,
        port,
        host,
        small_universe=False,
        ticker_seconds=1.0,
        kite_ip_whitelist=(),
        egress_proxy="",
        **options,
    ):
        if not ticker_seconds > 0:
            raise CommandError("--ticker-seconds must be above 0.")
        demo_app = KiteApp(
            api_key=getattr(settings, "THOR_SANDBOX_KITE_API_KEY", "thor_demo_key"),
            api_secret=getattr(settings, "THOR_SANDBOX_KITE_API_SECRET", "thor_demo_secret"),
            redirect_url=getattr(
                settings, "THOR_SANDBOX_KITE_REDIRECT_URL", "http://127.0.0.1:8000/api/auth/broker/callback"
            ),
            postback_url=getattr(
                settings, "THOR_SANDBOX_KITE_POSTBACK_URL", "http://127.0.0.1:8000/api/brokers/kite/postback/"
            ),
            ip_whitelist=tuple(kite_ip_whitelist),
        )
        # The demo OAuth clients Thor's social login uses by default in development (THOR_SOCIAL_DEFAULT_APPS).
        idp_clients = {
            provider: [client]
            for provider, client in getattr(settings, "THOR_SOCIAL_DEFAULT_APPS", {}).items()
            if client.get("client_id") and client.get("client_secret")
        }
        schwab_app = {
            "client_id": getattr(settings, "THOR_SANDBOX_SCHWAB_CLIENT_ID", "thor_demo_schwab_client"),
            "client_secret": getattr(settings, "THOR_SANDBOX_SCHWAB_CLIENT_SECRET", "thor_demo_schwab_secret"),
            "redirect_uri": getattr(
                settings, "THOR_SANDBOX_SCHWAB_REDIRECT_URL", "http://localhost:5173/schwab/callback"
            ),
        }
        try:
            server = SandboxServer(
                apps=[demo_app],
                faults=_faults_from_env(),
                host=host,
                port=port,
                idp_clients=idp_clients,
                schwab_apps=[schwab_app],
                full_universe=not small_universe,
                ticker_seconds=ticker_seconds,
            )
        except OSError as error:
            raise CommandError(f"Cannot listen on {host}:{port}: {error}") from error

        self.stdout.write(f"Broker sandbox listening on {server.url}")
        if egress_proxy:
            self._start_egress_proxy(egress_proxy)
        self.stdout.write(f"Kite app: api_key={demo_app.api_key} redirect_url={demo_app.redirect_url}")
        if demo_app.ip_whitelist:
            self.stdout.write(f"Kite orders taken only from: {', '.join(demo_app.ip_whitelist)}")
        self.stdout.write(f"Kite login page: {server.url}/connect/login?v=3&api_key={demo_app.api_key}")
        for provider, clients in idp_clients.items():
            self.stdout.write(f"{provider.title()} sandbox client: client_id={clients[0]['client_id']}")
        self.stdout.write(
            f"Schwab app: client_id={schwab_app['client_id']} redirect_uri={schwab_app['redirect_uri']} "
            "(demo user sandbox / sandbox)"
        )
        self.stdout.write(f"Google discovery: {server.url}/google/.well-known/openid-configuration")
        for user in DEMO_USERS:
            self.stdout.write(f"Demo user: {user.user_id} / {user.password}")
        self.stdout.write("Press Ctrl+C to stop.")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopping the broker sandbox.")
        finally:
            server.shutdown()

    def _start_egress_proxy(self, where: str) -> None:
        address, port = _split_address(where)
        try:
            proxy = EgressProxy(address, port)
        except OSError as error:
            # macOS has no 127.0.0.2 until `sudo ifconfig lo0 alias 127.0.0.2`: the sandbox runs on without it.
            self.stderr.write(f"No egress proxy on {where}: {error}. Live Kite orders need an egress elsewhere.")
            return
        self.stdout.write(f"Egress proxy (a user's static IP) on {proxy.url()}")


def _split_address(value: str) -> tuple[str, int]:
    address, _, port = value.rpartition(":")
    if not address or not port.isdigit():
        raise CommandError(f"--egress-proxy takes HOST:PORT, not {value!r}.")
    return address, int(port)


def _faults_from_env() -> list[Fault]:
    raw = os.environ.get("THOR_SANDBOX_FAULTS", "").strip()
    if not raw:
        return []
    try:
        entries = json.loads(raw)
        if not isinstance(entries, list):
            raise ValueError("expected a JSON list of faults")
        return [Fault.from_mapping(entry) for entry in entries]
    except ValueError as error:
        raise CommandError(f"THOR_SANDBOX_FAULTS is invalid: {error}") from error
