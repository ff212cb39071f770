"""One sandbox serving the NIFTY/BANKNIFTY chain for all the analytics tests, with Thor's instrument master loaded
from its dump once (committed outside the tests' transactions, removed at the end).

Each test starts from the sandbox's initial state (no faults, no counts) and an empty cache; the chain rows
a test stores are rolled back with its transaction.
"""

from contextlib import ExitStack, contextmanager

import pytest
from django.test import override_settings

from analytics.models import ChainQuote, ChainSnapshot
from analytics.quotes import MarketChainQuotes
from brokers.models import BrokerApp
from brokers.sandbox.testing import start_sandbox
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, CALLBACK, market_data_link
from identity.models import User
from identity.tests.factories import TenantFactory
from market.loading import instruments_load
from market.models import Instrument
from market.quotes import QuoteService
from market.sources import kite_dump_rows

UNDERLYINGS = ["NIFTY", "BANKNIFTY"]


def remove_market_data() -> None:
    ChainQuote.objects.all().delete()
    ChainSnapshot.objects.all().delete()
    Instrument.objects.all().delete()


@contextmanager
def committed_chain_quotes(sandbox):
    """Chain quotes through a market-data connection of a tenant of its own, committed (for snapshots taken
    outside the tests' transactions) and removed afterwards."""
    tenant = TenantFactory(slug="chain-history")
    try:
        yield MarketChainQuotes(QuoteService.of(market_data_link(sandbox, tenant)))
    finally:
        User.objects.filter(tenant=tenant).delete()
        BrokerApp.objects.filter(tenant=tenant).delete()
        tenant.delete()


@pytest.fixture(scope="package")
def chain_market(django_db_setup, django_db_blocker):
    """The sandbox and its instruments loaded (each test links the market-data connection snapshots quote through)."""
    with ExitStack() as stack:
        running = stack.enter_context(
            start_sandbox(
                apps=[{"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": CALLBACK}], tick_seconds=None
            )
        )
        stack.enter_context(
            override_settings(
                THOR_KITE_API_ROOT=running.url,
                THOR_ANALYTICS_UNDERLYINGS=UNDERLYINGS,
            )
        )
        with django_db_blocker.unblock():
            remove_market_data()
            instruments_load(rows=kite_dump_rows())
        try:
            yield running
        finally:
            with django_db_blocker.unblock():
                remove_market_data()


@pytest.fixture
def chain_sandbox(chain_market, db, tenant):
    """The shared sandbox, as it started (no faults, no counts), and tenant acme's market-data connection at it:
    the one snapshots quote through, as in production."""
    chain_market.reset()
    market_data_link(chain_market, tenant)
    return chain_market
