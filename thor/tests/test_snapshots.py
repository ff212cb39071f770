import threading
import time
import uuid

import pytest

from thor import snapshots
from thor.upstream import UpstreamError, UpstreamErrorCode


class Upstream:
    """A broker read that counts its calls and answers what it is told to."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0
        self._counting = threading.Lock()

    def __call__(self):
        with self._counting:  # readers may call from several threads
            self.calls += 1
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


UNAVAILABLE = UpstreamError("down", code=UpstreamErrorCode.UNAVAILABLE)
TOKEN_EXPIRED = UpstreamError("expired", code=UpstreamErrorCode.TOKEN_EXPIRED, permanent=True)


@pytest.fixture
def key():
    return snapshots.key("acme", uuid.uuid4().hex, "positions")


class TestReadThrough:
    def test_a_fresh_copy_is_served_from_the_cache(self, key):
        upstream = Upstream({"cash": "100.00"})
        first = snapshots.read_through(key, upstream)

        second = snapshots.read_through(key, upstream)

        assert (first.source, second.source) == ("live", "cache")
        assert second.data == {"cash": "100.00"}
        assert second.as_of == first.as_of
        assert upstream.calls == 1

    def test_force_goes_to_the_broker(self, key):
        upstream = Upstream("old", "new")
        snapshots.read_through(key, upstream)

        forced = snapshots.read_through(key, upstream, force=True)

        assert (forced.source, forced.data) == ("live", "new")
        assert upstream.calls == 2

    def test_a_passing_failure_serves_the_last_good_snapshot_with_its_own_as_of(self, key):
        good = snapshots.read_through(key, Upstream("good"))
        snapshots.forget(key)

        stale = snapshots.read_through(key, Upstream(UNAVAILABLE))

        assert (stale.source, stale.data, stale.as_of) == ("stale", "good", good.as_of)

    def test_a_permanent_failure_raises_even_with_a_snapshot(self, key):
        snapshots.read_through(key, Upstream("good"))

        with pytest.raises(UpstreamError) as raised:
            snapshots.read_through(key, Upstream(TOKEN_EXPIRED), force=True)

        assert raised.value.code == UpstreamErrorCode.TOKEN_EXPIRED

    def test_a_failure_without_any_snapshot_raises(self, key):
        with pytest.raises(UpstreamError):
            snapshots.read_through(key, Upstream(UNAVAILABLE))

    def test_forget_drops_the_fresh_copy_only(self, key):
        upstream = Upstream("v1", "v2")
        snapshots.read_through(key, upstream)

        snapshots.forget(key)

        assert snapshots.read_through(key, upstream).data == "v2"


class TestAfterAFailure:
    def test_readers_within_the_fresh_period_get_the_snapshot_without_calling_again(self, key):
        snapshots.read_through(key, Upstream("good"))
        snapshots.forget(key)
        failing = Upstream(UNAVAILABLE)
        snapshots.read_through(key, failing)

        again = snapshots.read_through(key, failing)

        assert (again.source, again.data) == ("stale", "good")
        assert failing.calls == 1

    def test_without_a_snapshot_they_get_the_same_error_without_calling_again(self, key):
        failing = Upstream(UNAVAILABLE)
        with pytest.raises(UpstreamError):
            snapshots.read_through(key, failing)

        with pytest.raises(UpstreamError) as raised:
            snapshots.read_through(key, failing)

        assert raised.value.code == UpstreamErrorCode.UNAVAILABLE
        assert failing.calls == 1

    def test_force_and_forget_try_the_broker_again(self, key):
        upstream = Upstream(UNAVAILABLE, "recovered")
        with pytest.raises(UpstreamError):
            snapshots.read_through(key, upstream)

        assert snapshots.read_through(key, upstream, force=True).data == "recovered"

    def test_peek_never_calls_the_broker(self, key):
        assert snapshots.peek(key) is None
        snapshots.read_through(key, Upstream("good"))

        assert (snapshots.peek(key).data, snapshots.peek(key).source) == ("good", "stale")


@pytest.fixture(params=["redis", "local"])
def backend(request, settings):
    """Single flight holds with the Redis lock and with the in-process one of the embedded mode."""
    if request.param == "local":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return request.param


def concurrently(count, read):
    """`read()` from `count` threads released at once; their results, in no particular order."""
    barrier = threading.Barrier(count)
    results = []

    def reader():
        barrier.wait()
        results.append(read())

    threads = [threading.Thread(target=reader) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


class TestSingleFlight:
    def test_ten_concurrent_readers_cause_one_upstream_call(self, backend, key):
        calls = []

        def slow_fetch():
            calls.append(threading.get_ident())
            time.sleep(0.2)
            return "positions"

        results = concurrently(10, lambda: snapshots.read_through(key, slow_fetch))

        assert len(calls) == 1
        assert len(results) == 10
        assert {result.data for result in results} == {"positions"}
        assert sorted(result.source for result in results) == ["cache"] * 9 + ["live"]

    def test_readers_waiting_on_a_call_that_fails_get_the_snapshot_without_calling_again(self, backend, key):
        snapshots.read_through(key, Upstream("good"))
        snapshots.forget(key)
        calls = []

        def slow_failure():
            calls.append(threading.get_ident())
            time.sleep(0.2)
            raise UNAVAILABLE

        results = concurrently(10, lambda: snapshots.read_through(key, slow_failure))

        assert len(calls) == 1
        assert {(result.source, result.data) for result in results} == {("stale", "good")}

    def test_concurrent_forced_readers_share_a_call_made_after_they_asked(self, backend, key):
        snapshots.read_through(key, Upstream("old"))
        upstream = Upstream("new")

        def slow_fetch():
            time.sleep(0.2)
            return upstream()

        results = concurrently(5, lambda: snapshots.read_through(key, slow_fetch, force=True))

        assert upstream.calls == 1
        assert {result.data for result in results} == {"new"}

    def test_a_holder_that_dies_blocks_the_others_only_until_its_lock_expires(self, backend, key, monkeypatch):
        monkeypatch.setattr(snapshots, "LOCK_SECONDS", 0.5)
        hung = threading.Event()
        dead_holder = threading.Thread(
            target=snapshots.read_through, args=(key, lambda: hung.wait(10) and "too late"), daemon=True
        )
        dead_holder.start()
        time.sleep(0.1)  # it has the lock, and never gives it back

        try:
            read = snapshots.read_through(key, Upstream("from the next reader"))
        finally:
            hung.set()
            dead_holder.join(10)

        assert (read.source, read.data) == ("live", "from the next reader")


class TestCacheOutage:
    def test_reads_degrade_to_direct_calls(self, settings, key):
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
        upstream = Upstream("direct")

        reads = [snapshots.read_through(key, upstream) for _ in range(2)]

        assert [(read.source, read.data) for read in reads] == [("live", "direct"), ("live", "direct")]
        assert upstream.calls == 2

    def test_concurrent_readers_each_call_directly_and_none_fails(self, settings, key):
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
        upstream = Upstream("direct")

        results = concurrently(5, lambda: snapshots.read_through(key, upstream))

        assert [(read.source, read.data) for read in results] == [("live", "direct")] * 5
        assert upstream.calls == 5


def _shout(data):
    return str(data).upper()


def _whisper(data):
    return str(data).lower()


class TestPresentations:
    """`present` runs once per snapshot; cache hits hand back what it made, for that present only."""

    def test_a_cache_hit_reuses_the_presentation_of_its_snapshot(self, key):
        calls = []

        def present(data):
            calls.append(data)
            return _shout(data)

        live = snapshots.read_through(key, Upstream("v1"), present=present)
        cached = snapshots.read_through(key, Upstream("never"), present=present)

        assert (live.source, cached.source) == ("live", "cache")
        assert snapshots.presented(live, present) == snapshots.presented(cached, present) == "V1"
        assert calls == ["v1"]

    def test_a_new_snapshot_is_presented_anew(self, key):
        snapshots.read_through(key, Upstream("v1"), present=_shout)
        snapshots.forget(key)  # what an order does

        after = snapshots.read_through(key, Upstream("v2"), present=_shout)
        cached = snapshots.read_through(key, Upstream("never"), present=_shout)

        assert snapshots.presented(after, _shout) == snapshots.presented(cached, _shout) == "V2"
        assert cached.as_of == after.as_of

    def test_another_present_never_sees_it(self, key):
        snapshots.read_through(key, Upstream("MiXeD"), present=_shout)

        cached = snapshots.read_through(key, Upstream("never"), present=_whisper)

        assert snapshots.presented(cached, _whisper) == "mixed"

    def test_a_snapshot_stored_without_one_is_presented_on_read(self, key):
        snapshots.read_through(key, Upstream("plain"))

        cached = snapshots.read_through(key, Upstream("never"), present=_shout)

        assert cached.source == "cache" and snapshots.presented(cached, _shout) == "PLAIN"

    def test_the_last_good_snapshot_keeps_its_presentation(self, key):
        snapshots.read_through(key, Upstream("good"), present=_shout)
        snapshots.forget(key)

        stale = snapshots.read_through(key, Upstream(UNAVAILABLE), present=_shout)

        assert stale.source == "stale" and snapshots.presented(stale, _shout) == "GOOD"

    def test_entries_of_the_earlier_shape_are_still_read(self, key):
        from django.core.cache import cache
        from django.utils import timezone

        cache.set(f"{key}:fresh", ("old", timezone.now()), 60)

        cached = snapshots.read_through(key, Upstream("never"), present=_shout)

        assert (cached.data, snapshots.presented(cached, _shout)) == ("old", "OLD")


class TestFreshBody:
    """The fresh presentation kept on its own: a reader that answers only it never unpickles the data."""

    def test_the_fresh_snapshots_presentation_for_its_present_only(self, key):
        live = snapshots.read_through(key, Upstream("v1"), present=_shout)

        kept = snapshots.fresh_body(key, _shout)

        assert (kept.body, kept.as_of) == ("V1", live.as_of)
        assert snapshots.fresh_body(key, _whisper) is None

    def test_none_without_a_presentation_or_once_forgotten(self, key):
        snapshots.read_through(key, Upstream("v1"))
        assert snapshots.fresh_body(key, _shout) is None

        snapshots.read_through(key, Upstream("v2"), force=True, present=_shout)
        snapshots.forget(key)

        assert snapshots.fresh_body(key, _shout) is None

    def test_a_snapshot_without_a_presentation_drops_the_one_before(self, key):
        snapshots.read_through(key, Upstream("v1"), present=_shout)

        snapshots.read_through(key, Upstream("v2"), force=True)

        assert snapshots.fresh_body(key, _shout) is None
