"""seed_demo lives in accounts: it seeds identity, brokers and accounts alike."""

import io

import pytest
from django.core.management import call_command

from accounts.models import Order, TradingAccount
from accounts.tests.conftest import place
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, sandbox_calls
from brokers.tests.schwab_link_steps import CLIENT_ID, CLIENT_SECRET, SPA_CALLBACK
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
        # Nothing listens on the discard port: no market-data connection is linked.
        settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"
        settings.THOR_SCHWAB_API_BASE = settings.THOR_SCHWAB_AUTH_BASE = "http://127.0.0.1:9"

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
    """`make run` runs the production code path: seed_demo links the demo tenant's market-data connections, a
    session at the sandbox's Kite and a login at its Schwab, under one market-data user, and paper orders are
    priced through the quote service, as a tenant's are through Kite and Schwab."""

    @pytest.fixture(autouse=True)
    def sandbox_app(self, sandbox, schwab_sandbox, settings):
        settings.THOR_SANDBOX_KITE_API_KEY, settings.THOR_SANDBOX_KITE_API_SECRET = API_KEY, API_SECRET
        settings.THOR_SANDBOX_SCHWAB_CLIENT_ID, settings.THOR_SANDBOX_SCHWAB_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
        settings.THOR_SANDBOX_SCHWAB_REDIRECT_URL = SPA_CALLBACK
        settings.THOR_PAPER_PRICE_SOURCE = "kite"

    def test_links_the_demo_tenants_market_data_connection_again_on_every_run(self, sandbox):
        run("seed_demo")
        first = BrokerConnection.objects.get(app__tenant__slug="demo", app__kind="kite", status="active")
        sandbox.reset()  # a restarted sandbox forgets its sessions

        output = run("seed_demo")

        connection = BrokerConnection.objects.get(app__tenant__slug="demo", app__kind="kite", status="active")
        assert connection.pk == first.pk and connection.access_token != first.access_token
        assert connection.app.owner_id is None and not connection.user.is_active
        assert f"Market data: connection {connection.pk}" in output
        assert "NSE:INFY" in quote_service(tenant=connection.app.tenant).quotes(["NSE:INFY"])

    def test_links_the_demo_tenants_schwab_market_data_connection_under_the_same_user(self, schwab_sandbox):
        output = run("seed_demo")

        kite = BrokerConnection.objects.get(app__tenant__slug="demo", app__kind=BrokerKind.KITE)
        schwab = BrokerConnection.objects.get(app__tenant__slug="demo", app__kind=BrokerKind.SCHWAB)
        assert schwab.user == kite.user and schwab.user.email == "market-data@demo.tenant.invalid"
        assert schwab.status == "active" and schwab.app.owner_id is None and not schwab.user.is_active
        assert f"US market data: connection {schwab.pk}" in output
        quotes = quote_service(tenant=schwab.app.tenant).quotes(["NASDAQ:AAPL", "NSE:INFY"])
        assert set(quotes) == {"NASDAQ:AAPL", "NSE:INFY"}
        assert sandbox_calls(schwab_sandbox, "GET /marketdata/v1/quotes") == 1

    def test_a_second_run_changes_nothing_but_the_sessions(self, sandbox, schwab_sandbox):
        run("seed_demo")
        rows = self.rows()
        sandbox.reset()
        schwab_sandbox.reset()  # restarted sandboxes forget their sessions and logins

        run("seed_demo")

        assert self.rows() == rows
        assert set(BrokerConnection.objects.values_list("status", flat=True)) == {"active"}

    @staticmethod
    def rows() -> dict:
        """Every row seed_demo writes, by what identifies it (tokens and sync times aside)."""
        return {
            "tenants": sorted(Tenant.objects.values_list("pk", "slug", "is_default")),
            "users": sorted(User.objects.values_list("pk", "email", "is_active")),
            "apps": sorted(BrokerApp.objects.values_list("pk", "kind", "api_key", "owner_id")),
            "connections": sorted(BrokerConnection.objects.values_list("pk", "app_id", "user_id", "broker_user_id")),
            "accounts": sorted(
                TradingAccount.objects.values_list("pk", "user_id", "mode", "currency", "connection_id")
            ),
        }

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

    def test_a_demo_users_us_paper_order_fills_at_a_sandbox_schwab_quote(self, sandbox, schwab_sandbox):
        run("seed_demo")
        kite_before = sandbox_calls(sandbox, "GET /quote")
        demo = User.objects.get(email="demo@thor.local")
        usd = demo.trading_accounts.get(mode="paper", currency="USD")

        response = place(client_for(demo), account=usd.pk, tradingsymbol="AAPL", exchange="NASDAQ", quantity=1)

        assert response.status_code == 201, response.json()
        assert response.json()["status"] == "COMPLETE"
        assert sandbox_calls(schwab_sandbox, "GET /marketdata/v1/quotes") == 1
        assert sandbox_calls(sandbox, "GET /quote") == kite_before

    def test_without_a_sandbox_it_says_so_and_seeds_the_rest(self, settings):
        settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"
        settings.THOR_SCHWAB_API_BASE = settings.THOR_SCHWAB_AUTH_BASE = "http://127.0.0.1:9"
        errors = io.StringIO()

        call_command("seed_demo", stdout=io.StringIO(), stderr=errors)

        assert "No market-data connection" in errors.getvalue()
        assert "No US market-data connection" in errors.getvalue()
        assert not BrokerConnection.objects.filter(app__tenant__slug="demo").exists()
        assert User.objects.filter(email="demo@thor.local").exists()
