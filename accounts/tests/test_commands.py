"""seed_demo lives in accounts: it seeds identity, brokers and accounts alike."""

import io

import pytest
from django.core.management import call_command

from accounts.models import Order
from accounts.tests.conftest import place
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, sandbox_calls
from conftest import client_for
from identity.models import Tenant, User
from market.quotes import quote_service

pytestmark = pytest.mark.django_db


def run(*args):
    output = io.StringIO()
    call_command(*args, stdout=output)
    return output.getvalue()


class TestSeedDemo:
    @pytest.fixture(autouse=True)
    def no_sandbox(self, settings):
        settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"  # nothing listens: no market-data connection is linked

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


class TestSeedDemoMarketData:
    """`make run` runs the production code path: seed_demo links the demo tenant's market-data connection at the
    sandbox's Kite, and paper orders are priced through the quote service, as a tenant's are through Kite."""

    @pytest.fixture(autouse=True)
    def sandbox_app(self, sandbox, settings):
        settings.THOR_SANDBOX_KITE_API_KEY, settings.THOR_SANDBOX_KITE_API_SECRET = API_KEY, API_SECRET
        settings.THOR_PAPER_PRICE_SOURCE = "kite"

    def test_links_the_demo_tenants_market_data_connection_again_on_every_run(self, sandbox):
        run("seed_demo")
        first = BrokerConnection.objects.get(app__tenant__slug="demo", status="active")
        sandbox.reset()  # a restarted sandbox forgets its sessions

        output = run("seed_demo")

        connection = BrokerConnection.objects.get(app__tenant__slug="demo", status="active")
        assert connection.pk == first.pk and connection.access_token != first.access_token
        assert connection.app.owner_id is None and not connection.user.is_active
        assert f"Market data: connection {connection.pk}" in output
        assert "NSE:INFY" in quote_service(tenant=connection.app.tenant).quotes(["NSE:INFY"])

    def test_a_demo_users_paper_order_fills_at_a_sandbox_quote(self, sandbox):
        run("seed_demo")
        before = sandbox_calls(sandbox, "GET /quote")
        demo = User.objects.get(email="demo@thor.local")

        inr = demo.trading_accounts.get(mode="paper", currency="INR")

        response = place(client_for(demo), account=inr.pk)

        assert response.status_code == 201, response.json()
        assert response.json()["status"] == "COMPLETE"
        assert sandbox_calls(sandbox, "GET /quote") - before == 1
        assert Order.objects.filter(account__user=demo).count() == 1

    def test_without_a_sandbox_it_says_so_and_seeds_the_rest(self, settings):
        settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"
        errors = io.StringIO()

        call_command("seed_demo", stdout=io.StringIO(), stderr=errors)

        assert "No market-data connection" in errors.getvalue()
        assert not BrokerConnection.objects.filter(app__tenant__slug="demo").exists()
        assert User.objects.filter(email="demo@thor.local").exists()
