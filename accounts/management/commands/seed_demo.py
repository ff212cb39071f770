from urllib.parse import quote

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.services import trading_account_create_paper
from brokers.adapters.errors import BrokerError
from brokers.models import BrokerApp, BrokerKind
from brokers.registry import adapter_for_app
from brokers.sandbox.testing import kite_request_token, schwab_authorization_code
from brokers.services import market_data_connect, schwab_market_data_connect
from identity.models import Tenant, User
from identity.services import user_register

DEMO_ORIGIN = "http://localhost:5173"
# The sandbox's demo Kite user (brokers/sandbox/kite_models.py): the demo tenant's market data comes through a
# session of it on the tenant's sandbox Kite app, as a tenant's comes through its own app in production.
MARKET_DATA_USER, MARKET_DATA_PASSWORD = "AB1234", "sandbox"
# The sandbox's demo Schwab login (brokers/sandbox/schwab_models.py): the demo tenant's US market data comes
# through it on the tenant's sandbox Schwab app, under the same market-data user as its Kite session.
SCHWAB_MARKET_DATA_USER, SCHWAB_MARKET_DATA_PASSWORD = "sandbox", "sandbox"
REAL_SCHWAB = "https://api.schwabapi.com"


class Command(BaseCommand):
    help = (
        "Development only: the demo tenant (default, allowing the SPA origin), a demo user, the sandbox Kite and "
        "Schwab apps, and the tenant's market-data connections (a session at the sandbox's Kite and a login at its "
        "Schwab: run it once the sandbox is up)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", default="demo@thor.local")
        parser.add_argument("--password", default="demo-password-123")

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("seed_demo creates a known password and the sandbox app: never in production.")
        kite_app, schwab_app = self._seed(options)
        # After the commit: no transaction stays open across a broker call.
        self._link_market_data(kite_app)
        self._link_us_market_data(schwab_app)

    @transaction.atomic
    def _seed(self, options) -> tuple[BrokerApp, BrokerApp]:
        Tenant.objects.exclude(slug="demo").filter(is_default=True).update(is_default=False)
        tenant, _ = Tenant.objects.update_or_create(
            slug="demo",
            # Social logins land on the SPA with seed 004's query string.
            defaults={
                "name": "Demo",
                "is_default": True,
                # One crore: enough for a NIFTY future (bought at full value on paper) and a few options.
                "paper_other_currencies": {"INR": "10000000.00"},
                "token_delivery": Tenant.TokenDelivery.QUERY,
                # Its orders carry an algo id, as a registered algo's would (README "Trading live from India").
                "algo_ids": ["DEMO-ALGO-1"],
            },
        )
        if DEMO_ORIGIN not in tenant.allowed_origins:
            tenant.allowed_origins = [*tenant.allowed_origins, DEMO_ORIGIN]
            tenant.save(update_fields=["allowed_origins"])
        if not User.objects.filter(email=options["email"]).exists():
            user = user_register(email=options["email"], password=options["password"], tenant_slug="demo")
            # The demo user trades the sandbox's Indian instruments too.
            trading_account_create_paper(user=user, currency="INR")
        kite_app = self._seed_sandbox_kite_app(tenant)
        schwab_app = self._seed_sandbox_schwab_app(tenant)
        self.stdout.write(self.style.SUCCESS(f"Demo tenant: demo (allows {DEMO_ORIGIN})"))
        self.stdout.write(self.style.SUCCESS(f"Demo user:   {options['email']} / {options['password']}"))
        self.stdout.write(
            f"Sandbox Kite app: api_key={settings.THOR_SANDBOX_KITE_API_KEY} "
            f"(secret: THOR_SANDBOX_KITE_API_SECRET, default in .env.example); sandbox login AB1234 / sandbox"
        )
        self.stdout.write(
            f"Sandbox Schwab app: client_id={settings.THOR_SANDBOX_SCHWAB_CLIENT_ID} "
            f"redirect_uri={settings.THOR_SANDBOX_SCHWAB_REDIRECT_URL}; sandbox login sandbox / sandbox "
            "(GET /api/schwab/oauth/start/)"
        )
        page = quote(f"{DEMO_ORIGIN}/oauth-complete.html?marketing_opt_in=true", safe="")
        for provider in ("google", "discord", "zerodha"):
            # Google and Discord use THOR_SOCIAL_DEFAULT_APPS (the sandbox's demo clients in development).
            self.stdout.write(
                f"Log in with {provider}: {settings.THOR_PUBLIC_URL}/api/demo/v1/auth/oauth/{provider}/login?redirect_uri={page}"
            )
        return kite_app, schwab_app

    def _link_market_data(self, app: BrokerApp) -> None:
        """The demo tenant's market-data connection: a session of the sandbox's demo user on the tenant's sandbox
        Kite app, linked again on every run (a restarted sandbox has forgotten its sessions)."""
        if not settings.THOR_KITE_IS_SANDBOX:
            return  # a real Kite's login is a person's, in a browser
        try:
            request_token = kite_request_token(
                settings.THOR_KITE_API_ROOT,
                api_key=app.api_key,
                user_id=MARKET_DATA_USER,
                password=MARKET_DATA_PASSWORD,
            )
            connection = market_data_connect(app=app, request_token=request_token)
        except (requests.RequestException, RuntimeError, BrokerError) as error:
            self.stderr.write(
                self.style.WARNING(
                    f"No market-data connection: the sandbox's Kite at {settings.THOR_KITE_API_ROOT} did not link "
                    f"one ({type(error).__name__}). Paper prices and chains need it: run seed_demo again once the "
                    "sandbox is up."
                )
            )
            return
        self.stdout.write(
            self.style.SUCCESS(f"Market data: connection {connection.pk} ({MARKET_DATA_USER} on the sandbox Kite app)")
        )

    def _link_us_market_data(self, app: BrokerApp) -> None:
        """The demo tenant's Schwab market-data connection (US quotes and instrument lookups): the sandbox's demo
        Schwab login on the tenant's sandbox Schwab app, under the same market-data user as its Kite session,
        linked again on every run (a restarted sandbox has forgotten its logins)."""
        if settings.PRODUCTION or settings.THOR_SCHWAB_API_BASE.startswith(REAL_SCHWAB):
            return  # a real Schwab login is a person's, in a browser
        try:
            code = schwab_authorization_code(
                adapter_for_app(app).authorization_url("seed_demo"),
                username=SCHWAB_MARKET_DATA_USER,
                password=SCHWAB_MARKET_DATA_PASSWORD,
            )
            connection = schwab_market_data_connect(app=app, code=code)
        except (requests.RequestException, RuntimeError, BrokerError) as error:
            self.stderr.write(
                self.style.WARNING(
                    f"No US market-data connection: the sandbox's Schwab at {settings.THOR_SCHWAB_API_BASE} did not "
                    f"link one ({type(error).__name__}). US paper prices need it: run seed_demo again once the "
                    "sandbox is up."
                )
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"US market data: connection {connection.pk} ({SCHWAB_MARKET_DATA_USER} on the sandbox Schwab app)"
            )
        )

    def _seed_sandbox_kite_app(self, tenant) -> BrokerApp:
        return self._seed_sandbox_app(
            tenant,
            kind=BrokerKind.KITE,
            name="Sandbox Kite",
            client_id=settings.THOR_SANDBOX_KITE_API_KEY,
            secret=settings.THOR_SANDBOX_KITE_API_SECRET,
            redirect_uri=settings.THOR_SANDBOX_KITE_REDIRECT_URL,
        )

    def _seed_sandbox_schwab_app(self, tenant) -> BrokerApp:
        # Seed 002: the SPA's /schwab/callback page relays the code to /api/schwab/oauth/callback/.
        return self._seed_sandbox_app(
            tenant,
            kind=BrokerKind.SCHWAB,
            name="Sandbox Schwab",
            client_id=settings.THOR_SANDBOX_SCHWAB_CLIENT_ID,
            secret=settings.THOR_SANDBOX_SCHWAB_CLIENT_SECRET,
            redirect_uri=settings.THOR_SANDBOX_SCHWAB_REDIRECT_URL,
        )

    @staticmethod
    def _seed_sandbox_app(tenant, *, kind, name, client_id, secret, redirect_uri) -> BrokerApp:
        app, _ = BrokerApp.objects.update_or_create(
            tenant=tenant,
            owner=None,
            kind=kind,
            api_key=client_id,
            defaults={"name": name, "api_secret": secret, "redirect_uri": redirect_uri},
        )
        return app
