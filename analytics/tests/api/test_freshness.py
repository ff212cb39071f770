"""Where an answer comes from: the latest stored snapshot (live, or stale when old), the cache, or, for a chain
never snapshotted, a first snapshot its reader takes. A read never refreshes a chain: the beat task does."""

from datetime import timedelta

import pytest
import time_machine

from analytics.chain_snapshots import chain_snapshot_take
from analytics.models import ChainSnapshot
from analytics.tests.api.conftest import ROLLOVER, SERIES, SIGNALS, STRIKES
from brokers.tests.sandbox_fixtures import market_data_link, sandbox_calls, sandbox_fault

ENDPOINTS = [
    (STRIKES, {"underlying": "NIFTY"}),
    # A fixed window: the default one ends now, a new answer at every request.
    (SERIES, {"underlying": "NIFTY", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}),
    (SIGNALS, {"symbol": "NIFTY"}),
    (ROLLOVER, {"symbol": "NIFTY"}),
]


@pytest.mark.usefixtures("just_after_the_last_snapshot")
@pytest.mark.parametrize(("path", "params"), ENDPOINTS)
def test_a_recent_snapshot_is_live_then_served_from_the_cache_within_the_period(history, bob_client, path, params):
    first = bob_client.get(path, params).json()
    assert (first["source"], first["as_of"]) == ("live", history[-1].taken_at.isoformat().replace("+00:00", "Z"))
    again = bob_client.get(path, params).json()
    assert again == {**first, "source": "cache"}


@pytest.mark.parametrize(("path", "params"), ENDPOINTS)
def test_an_old_chain_is_served_stale_and_a_read_never_quotes(history, chain_sandbox, bob_client, path, params):
    # Ten minutes on, five snapshot periods without one (a read never quotes, whatever the session).
    with time_machine.travel(history[-1].taken_at + timedelta(minutes=10), tick=True):
        stale = bob_client.get(path, params).json()
        assert stale["source"] == "stale"
        assert stale["as_of"] == history[-1].taken_at.isoformat().replace("+00:00", "Z")
        assert bob_client.get(path, params).json()["source"] == "stale"  # the cache never makes it fresher
    assert sandbox_calls(chain_sandbox, "GET /quote") == 0


def test_the_next_snapshot_makes_the_chain_live_again(history, chain_sandbox, bob_client, tenant):
    # Ten minutes on, five snapshot periods without one.
    with time_machine.travel(history[-1].taken_at + timedelta(minutes=10), tick=True):
        assert bob_client.get(STRIKES, {"underlying": "NIFTY"}).json()["source"] == "stale"
        # The day's market-data session, as the operator's morning login makes it: Kite's sessions end at 06:00
        # IST, which ten minutes on has passed when the package started shortly before it.
        market_data_link(chain_sandbox, tenant)
        fresh = chain_snapshot_take(underlying="NIFTY")  # what the beat task does for each underlying
        body = bob_client.get(STRIKES, {"underlying": "NIFTY"}).json()
    assert body["source"] == "live"
    assert body["as_of"] == fresh.taken_at.isoformat().replace("+00:00", "Z")


def test_the_first_reader_of_a_chain_never_snapshotted_takes_its_first_snapshot(chain_sandbox, bob_client):
    assert not ChainSnapshot.objects.filter(underlying="BANKNIFTY").exists()
    body = bob_client.get(ROLLOVER, {"symbol": "BANKNIFTY"}).json()
    assert body["source"] == "live" and body["contracts"]
    taken = sandbox_calls(chain_sandbox, "GET /quote")
    assert taken > 0
    assert bob_client.get(STRIKES, {"underlying": "BANKNIFTY"}).json()["source"] == "live"
    assert sandbox_calls(chain_sandbox, "GET /quote") == taken  # the next readers read it


def test_a_first_snapshot_that_cannot_be_taken_is_a_503_not_retried_within_the_period(chain_sandbox, bob_client):
    sandbox_fault(chain_sandbox, kind="5xx", path="/quote")
    response = bob_client.get(STRIKES, {"underlying": "BANKNIFTY"})
    assert response.status_code == 503
    assert response.json()["code"] == "market_data_unavailable"
    tried = sandbox_calls(chain_sandbox, "GET /quote")
    assert tried > 0
    assert bob_client.get(SIGNALS, {"symbol": "BANKNIFTY"}).status_code == 503
    assert sandbox_calls(chain_sandbox, "GET /quote") == tried


def test_a_configured_underlying_never_snapshotted_and_unreachable_is_503(chain_sandbox, bob_client, settings):
    settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"  # nothing listens on the discard port
    response = bob_client.get(STRIKES, {"underlying": "BANKNIFTY"})
    assert response.status_code == 503
    assert response.json()["code"] == "market_data_unavailable"
