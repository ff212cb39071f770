"""seed_demo lives in accounts: it seeds identity, brokers and accounts alike."""

import io

import pytest
from django.core.management import call_command

from brokers.models import BrokerApp, BrokerKind
from identity.models import Tenant, User

pytestmark = pytest.mark.django_db


def run(*args):
    output = io.StringIO()
    call_command(*args, stdout=output)
    return output.getvalue()


class TestSeedDemo:
    def test_makes_the_demo_tenant_the_default_allowing_the_spa(self):
        run("seed_demo")

        demo = Tenant.objects.get(is_default=True)
        assert demo.slug == "demo"
        assert demo.allowed_origins == ["http://localhost:5173"]
        assert User.objects.get(email="demo@thor.local").tenant == demo

    def test_is_idempotent(self):
        run("seed_demo")

        run("seed_demo")

        assert Tenant.objects.filter(slug="demo").count() == 1
        assert Tenant.objects.get(slug="demo").allowed_origins == ["http://localhost:5173"]
        assert User.objects.filter(email="demo@thor.local").count() == 1
        accounts = User.objects.get(email="demo@thor.local").trading_accounts
        assert sorted(accounts.values_list("currency", "is_primary")) == [("INR", False), ("USD", True)]

    def test_gives_the_demo_tenant_a_schwab_app_on_the_sandbox_with_seed_002s_callback(self, settings):
        run("seed_demo")
        run("seed_demo")

        (app,) = BrokerApp.objects.filter(tenant__slug="demo", kind=BrokerKind.SCHWAB)
        assert app.api_key == settings.THOR_SANDBOX_SCHWAB_CLIENT_ID
        assert app.api_secret == settings.THOR_SANDBOX_SCHWAB_CLIENT_SECRET
        assert app.redirect_uri == "http://localhost:5173/schwab/callback"
