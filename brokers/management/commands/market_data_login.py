from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from brokers.models import BrokerApp, BrokerKind
from brokers.services.market_data_login import market_data_login_start
from identity.models import Tenant


class Command(BaseCommand):
    help = (
        "Print the broker login URL that logs in a tenant's market-data session (the session on its shared Kite "
        "or Schwab app that quotes and ticks go through; Kite's ends every day at 06:00 IST). Open it in a "
        "browser and log in at the broker with the tenant's market-data account: the broker sends the browser "
        "to the app's callback, which links the session and ends on the app's admin page. The URL works once, "
        "within THOR_OAUTH_STATE_MAX_AGE seconds; it carries no token or secret. The admin's 'Log in the "
        "market-data session' button does the same for staff of the tenant."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--broker", required=True, choices=[BrokerKind.KITE, BrokerKind.SCHWAB])

    def handle(self, *args, tenant: str, broker: str, **options):
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant {tenant!r}.")
        app = BrokerApp.objects.filter(tenant=found, owner__isnull=True, kind=broker).order_by("id").first()
        if app is None:
            raise CommandError(f"Tenant {tenant!r} has no shared {broker} app.")
        url = market_data_login_start(app=app, operator=None)
        minutes = settings.THOR_OAUTH_STATE_MAX_AGE // 60
        self.stdout.write(f"Open this within {minutes} minutes and log in with {tenant}'s market-data account:")
        self.stdout.write(url)
        if broker == BrokerKind.KITE:
            callback = f"{settings.THOR_PUBLIC_URL}/api/auth/broker/callback"
            self.stdout.write(f"Kite then sends the browser to the app's redirect URL, which must be {callback}.")
        else:
            backend = f"{settings.THOR_PUBLIC_URL}/api/schwab/oauth/callback/"
            self.stdout.write(
                f"Schwab then sends the browser to the app's redirect URL ({app.redirect_uri or 'the default'}). "
                f"If that is not {backend}, open {backend}?code=...&state=... with the code and state Schwab sent, "
                "in a browser not signed in to the SPA."
            )
