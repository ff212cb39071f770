from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.services import trading_account_create_paper
from brokers.models import BrokerApp, BrokerKind
from identity.models import Tenant, User
from identity.services import user_register

DEMO_ORIGIN = "http://localhost:5173"


class Command(BaseCommand):
    help = "Development only: the demo tenant (default, allowing the SPA origin), a demo user and the sandbox Kite and Schwab apps."

    def add_arguments(self, parser):
        parser.add_argument("--email", default="demo@thor.local")
        parser.add_argument("--password", default="demo-password-123")

    @transaction.atomic
    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("seed_demo creates a known password and the sandbox app: never in production.")
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
        self._seed_sandbox_kite_app(tenant)
        self._seed_sandbox_schwab_app(tenant)
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

    def _seed_sandbox_kite_app(self, tenant):
        self._seed_sandbox_app(
            tenant,
            kind=BrokerKind.KITE,
            name="Sandbox Kite",
            client_id=settings.THOR_SANDBOX_KITE_API_KEY,
            secret=settings.THOR_SANDBOX_KITE_API_SECRET,
            redirect_uri=settings.THOR_SANDBOX_KITE_REDIRECT_URL,
        )

    def _seed_sandbox_schwab_app(self, tenant):
        # Seed 002: the SPA's /schwab/callback page relays the code to /api/schwab/oauth/callback/.
        self._seed_sandbox_app(
            tenant,
            kind=BrokerKind.SCHWAB,
            name="Sandbox Schwab",
            client_id=settings.THOR_SANDBOX_SCHWAB_CLIENT_ID,
            secret=settings.THOR_SANDBOX_SCHWAB_CLIENT_SECRET,
            redirect_uri=settings.THOR_SANDBOX_SCHWAB_REDIRECT_URL,
        )

    @staticmethod
    def _seed_sandbox_app(tenant, *, kind, name, client_id, secret, redirect_uri):
        BrokerApp.objects.update_or_create(
            tenant=tenant,
            owner=None,
            kind=kind,
            api_key=client_id,
            defaults={"name": name, "api_secret": secret, "redirect_uri": redirect_uri},
        )
