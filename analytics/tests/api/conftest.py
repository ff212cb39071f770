"""Five one-minute snapshots of NIFTY, taken once for all the API tests (BANKNIFTY has none)."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from analytics.chain_snapshots import chain_snapshot_take
from analytics.models import ChainQuote, ChainSnapshot
from analytics.tests.conftest import committed_chain_quotes

STRIKES = "/api/fo/strike-distribution"
SERIES = "/api/fo/moneyness-series"
SIGNALS = "/api/futures/position-signals"
ROLLOVER = "/api/futures/rollover-metrics"


@pytest.fixture(scope="package")
def nifty_history(chain_market, django_db_blocker):
    """Five one-minute snapshots of NIFTY ending when the package's tests start; their summaries, oldest first."""
    now = timezone.now()
    with django_db_blocker.unblock(), committed_chain_quotes(chain_market) as source:
        summaries = [
            chain_snapshot_take(underlying="NIFTY", at=now - timedelta(minutes=minutes), source=source)
            for minutes in range(4, -1, -1)
        ]
    yield summaries
    with django_db_blocker.unblock():
        ChainQuote.objects.all().delete()
        ChainSnapshot.objects.all().delete()


@pytest.fixture
def history(nifty_history, chain_sandbox):
    return nifty_history


@pytest.fixture
def just_after_the_last_snapshot(history):
    """The clock a few seconds after the last snapshot: it is fresh, however long the tests before took."""
    with time_machine.travel(history[-1].taken_at + timedelta(seconds=5), tick=True):
        yield
