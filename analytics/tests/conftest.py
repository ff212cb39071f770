"""One sandbox serving the NIFTY/BANKNIFTY chain for all the analytics tests, with Thor's instrument master loaded
from its dump once (committed outside the tests' transactions, removed at the end).

Each test starts from the sandbox's initial state (no faults, no counts) and an empty cache; the chain rows
a test stores are rolled back with its transaction.
"""

from contextlib import ExitStack

import pytest
from django.test import override_settings

from analytics.models import ChainQuote, ChainSnapshot
from brokers.sandbox.testing import start_sandbox
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, CALLBACK
from market.loading import instruments_load
from market.models import Instrument
from market.sources import kite_dump_rows

UNDERLYINGS = ["NIFTY", "BANKNIFTY"]


def remove_market_data() -> None:
    ChainQuote.objects.all().delete()
    ChainSnapshot.objects.all().delete()
    Instrument.objects.all().delete()


@pytest.fixture(scope="package")
def chain_market(django_db_setup, django_db_blocker):
    """The sandbox, Thor's snapshots quoting it with a session of their own, and its instruments loaded."""
    with ExitStack() as stack:
        running = stack.enter_context(
            start_sandbox(
                apps=[{"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": CALLBACK}], tick_seconds=None
            )
        )
        stack.enter_context(
            override_settings(
                THOR_KITE_API_ROOT=running.url,
                THOR_ANALYTICS_QUOTE_SOURCE="sandbox",
                THOR_SANDBOX_KITE_API_KEY=API_KEY,
                THOR_SANDBOX_KITE_API_SECRET=API_SECRET,
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
def chain_sandbox(chain_market, db):
    """The shared sandbox, as it started (no faults, no counts)."""
    chain_market.reset()
    return chain_market
