import pytest

from brokers.models import BrokerApp
from brokers.tests.market_data_login_steps import staff_of
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET


@pytest.fixture
def operator(tenant):
    """Staff of tenant acme who may log in its market-data sessions (brokers.tests.market_data_login_steps)."""
    return staff_of(tenant, "ops@acme.test")


@pytest.fixture
def kite_app(sandbox, tenant, settings):
    """Tenant acme's shared Kite app at the sandbox, its paper accounts priced through its market-data session."""
    settings.THOR_PAPER_PRICE_SOURCE = "kite"
    return BrokerApp.objects.create(tenant=tenant, kind="kite", api_key=API_KEY, api_secret=API_SECRET)
