"""analytics.caches: answers keyed by the snapshot they come from, and the flushes the services call."""

from datetime import UTC, datetime

from analytics import caches
from analytics.chain_snapshots import chain_snapshot_take

AT = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def test_an_answer_is_computed_once_per_snapshot_and_parameters():
    computed = []

    def compute():
        computed.append(1)
        return {"n": len(computed)}

    assert caches.cached_answer("read", {"u": "NIFTY", "at": AT}, compute) == ({"n": 1}, False)
    assert caches.cached_answer("read", {"u": "NIFTY", "at": AT}, compute) == ({"n": 1}, True)
    later = AT.replace(minute=1)
    assert caches.cached_answer("read", {"u": "NIFTY", "at": later}, compute) == ({"n": 2}, False)
    assert caches.answer_key("read", {"at": AT, "u": "NIFTY"}) == caches.answer_key("read", {"u": "NIFTY", "at": AT})


def test_a_stored_snapshot_flushes_the_first_snapshot_marker_once_committed(
    chain_sandbox, django_capture_on_commit_callbacks
):
    caches.remember_first_snapshot_failed("NIFTY")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        chain_snapshot_take(underlying="NIFTY")
    assert caches.first_snapshot_failed("NIFTY"), "nothing is flushed before the commit"
    for callback in callbacks:
        callback()
    assert not caches.first_snapshot_failed("NIFTY")


def test_a_snapshot_that_stored_nothing_flushes_nothing(chain_sandbox, django_capture_on_commit_callbacks):
    caches.remember_first_snapshot_failed("NOSUCH")
    with django_capture_on_commit_callbacks(execute=True):
        assert chain_snapshot_take(underlying="NOSUCH").rows == 0
    assert caches.first_snapshot_failed("NOSUCH")
