"""A sandbox that serves the NIFTY/BANKNIFTY chain, with Thor's instruments loaded from its dump."""

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.instruments import dump_rows_from_kite, instruments_load
from analytics.snapshots import chain_snapshot_take
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET


@pytest.fixture
def chain_sandbox(sandbox, settings, db):
    """The sandbox, Thor's snapshots quoting it with a session of their own, and its instruments loaded."""
    settings.THOR_ANALYTICS_QUOTE_SOURCE = "sandbox"
    settings.THOR_SANDBOX_KITE_API_KEY = API_KEY
    settings.THOR_SANDBOX_KITE_API_SECRET = API_SECRET
    settings.THOR_ANALYTICS_UNDERLYINGS = ["NIFTY", "BANKNIFTY"]
    instruments_load(rows=dump_rows_from_kite())
    return sandbox


@pytest.fixture
def nifty_history(chain_sandbox):
    """Five one-minute snapshots of NIFTY ending now (the last one fresh)."""
    now = timezone.now()
    return [
        chain_snapshot_take(underlying="NIFTY", at=now - timedelta(minutes=minutes)) for minutes in range(4, -1, -1)
    ]
