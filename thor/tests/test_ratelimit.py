import logging
import time
import uuid
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thor import coordination, ratelimit


@pytest.fixture
def bucket():
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(params=["redis", "local"])
def backend(request, settings):
    """Every behaviour holds with the Redis buckets and with the in-process fallback."""
    if request.param == "local":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert ratelimit._uses_redis() is (request.param == "redis")
    return request.param


@pytest.fixture
def sleeps(monkeypatch):
    """Every time.sleep the limiter asks for (and still sleeps)."""
    asked = []
    real_sleep = time.sleep

    def recording_sleep(seconds):
        asked.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", recording_sleep)
    return asked


class TestSlidingWindow:
    def test_a_burst_of_rate_then_refusal(self, backend, bucket):
        taken = [ratelimit.acquire(bucket, rate=3) for _ in range(4)]

        assert taken == [True, True, True, False]

    def test_waiting_for_the_oldest_to_leave_the_window_succeeds(self, backend, bucket, sleeps):
        for _ in range(5):
            ratelimit.acquire(bucket, rate=5, per=0.2)
        assert ratelimit.acquire(bucket, rate=5, per=0.2) is False

        assert ratelimit.acquire(bucket, rate=5, per=0.2, wait=1.0) is True
        assert sleeps and all(0 < seconds <= 0.2 for seconds in sleeps)

    def test_a_wait_too_short_for_room_is_refused_without_sleeping(self, backend, bucket, sleeps):
        ratelimit.acquire(bucket, rate=1, per=60)

        assert ratelimit.acquire(bucket, rate=1, per=60, wait=0.5) is False
        assert sleeps == []

    def test_buckets_are_independent(self, backend, bucket):
        ratelimit.acquire(bucket, rate=1)

        assert ratelimit.acquire(bucket, rate=1) is False
        assert ratelimit.acquire(f"{bucket}-other", rate=1) is True

    def test_half_a_window_after_a_burst_nothing_more_is_granted(self, backend, bucket, time_passes):
        # A token bucket (burst 10, 10 a second) grants five more here: fifteen in half a second.
        assert all(ratelimit.acquire(bucket, rate=10) for _ in range(10))
        time_passes(0.5)

        assert ratelimit.acquire(bucket, rate=10) is False
        time_passes(0.6)
        assert [ratelimit.acquire(bucket, rate=10) for _ in range(11)] == [True] * 10 + [False]


class TestSettledCalls:
    """A call counted from when it was over (Grant.settle): the broker received it by then."""

    def test_a_settled_call_counts_from_when_it_settled(self, backend, bucket, time_passes):
        grant = ratelimit.reserve([ratelimit.Budget(bucket, 1, 1)])
        time_passes(0.6)
        grant.settle()
        time_passes(0.6)  # 1.2 s after it was granted, 0.6 s after it was over

        assert ratelimit.acquire(bucket, rate=1) is False
        time_passes(0.5)
        assert ratelimit.acquire(bucket, rate=1) is True

    def test_settling_a_call_that_left_the_window_brings_nothing_back(self, backend, bucket, time_passes):
        grant = ratelimit.reserve([ratelimit.Budget(bucket, 1, 1)])
        time_passes(1.5)
        assert ratelimit.acquire(bucket, rate=1) is True

        grant.settle()

        assert ratelimit.tokens_left([ratelimit.Budget(bucket, 1, 1)]) == [0]


class TestNoWindowHoldsMoreThanTheRate:
    """The broker counts its own windows, wherever they fall: no `per` seconds may hold more than `rate` grants,
    and a call is refused only when `rate` grants lie in the `per` seconds before it (nothing stricter)."""

    @given(
        rate=st.integers(min_value=1, max_value=6),
        per=st.sampled_from([0.5, 1.0, 60.0]),
        gaps=st.lists(st.floats(min_value=0, max_value=1.5, allow_nan=False), min_size=1, max_size=60),
    )
    def test_any_sequence_of_calls(self, rate, per, gaps):
        clock = [1000.0]
        bucket = f"property-{uuid.uuid4().hex}"
        granted = []
        with (
            mock.patch.object(ratelimit, "_local_now", lambda: clock[0]),
            mock.patch.object(ratelimit, "_uses_redis", lambda: False),
        ):
            for gap in gaps:
                clock[0] += gap * per
                now = clock[0]
                in_window = [at for at in granted if at > now - per]
                refused = ratelimit.refusal([ratelimit.Budget(bucket, rate, per)])
                assert (refused is None) is (len(in_window) < rate)
                if refused is None:
                    granted.append(now)
                else:  # room comes when the grant that makes the window full leaves it, not before or after
                    assert refused.retry_after == pytest.approx(in_window[-rate] + per - now)
        for index, start in enumerate(granted):
            assert len([at for at in granted[index:] if at < start + per]) <= rate


class TestRefill:
    def test_a_spent_bucket_is_full_again_and_no_other_is_touched(self, backend, bucket):
        other = f"{bucket}-other"
        for name in (bucket, other):
            assert [ratelimit.acquire(name, rate=2, per=60) for _ in range(3)] == [True, True, False]

        ratelimit.refill(bucket)

        assert [ratelimit.acquire(bucket, rate=2, per=60) for _ in range(3)] == [True, True, False]
        assert ratelimit.acquire(other, rate=2, per=60) is False

    def test_a_bucket_never_spent_stays_full(self, backend, bucket):
        ratelimit.refill(bucket)

        assert ratelimit.tokens_left([ratelimit.Budget(bucket, rate=4)]) == [4]


class TestSeveralBucketsAtOnce:
    """A call that needs several budgets (a Kite order: its user's and its app's) takes from all or none."""

    def test_one_token_from_each(self, backend, bucket):
        budgets = [ratelimit.Budget(bucket, rate=5, per=60), ratelimit.Budget(f"{bucket}-user", rate=10, per=60)]

        assert ratelimit.refusal(budgets) is None

        assert ratelimit.tokens_left(budgets) == [4, 9]

    def test_an_empty_one_refuses_and_the_others_keep_their_token(self, backend, bucket):
        app, user = ratelimit.Budget(bucket, rate=5, per=60), ratelimit.Budget(f"{bucket}-user", rate=1, per=60)
        assert ratelimit.acquire(user.bucket, rate=1, per=60)

        assert ratelimit.refusal([app, user]).budget is user

        assert ratelimit.tokens_left([app])[0] == 5.0

    def test_the_shortest_is_named_and_waited_for(self, backend, bucket, sleeps):
        slow, fast = ratelimit.Budget(bucket, rate=1, per=60), ratelimit.Budget(f"{bucket}-fast", rate=10)
        ratelimit.acquire(slow.bucket, rate=1, per=60)
        for _ in range(10):
            ratelimit.acquire(fast.bucket, rate=10)

        assert ratelimit.refusal([fast, slow], wait=0.5).budget is slow
        assert sleeps == []  # a minute's wait does not fit in half a second: refused at once


class TestTokensLeft:
    """How many more calls a budget grants now, read without spending: the connection health's rate budget."""

    def test_a_bucket_never_spent_is_full(self, backend, bucket):
        assert ratelimit.tokens_left([ratelimit.Budget(bucket, rate=5, per=60)]) == [5.0]

    def test_each_acquire_takes_one_and_reading_takes_none(self, backend, bucket):
        budget = ratelimit.Budget(bucket, rate=5, per=60)
        ratelimit.acquire(bucket, rate=5, per=60)
        ratelimit.acquire(bucket, rate=5, per=60)

        first, again = ratelimit.tokens_left([budget]), ratelimit.tokens_left([budget])

        assert first == again == [3]
        assert ratelimit.acquire(bucket, rate=5, per=60) is True

    def test_many_buckets_in_one_read_each_its_own(self, backend, bucket):
        ratelimit.acquire(bucket, rate=1, per=60)
        budgets = [ratelimit.Budget(bucket, rate=1, per=60), ratelimit.Budget(f"{bucket}-other", rate=10, per=60)]

        left = ratelimit.tokens_left(budgets)

        assert left == [0, 10]

    def test_no_buckets_asks_nothing(self, backend):
        assert ratelimit.tokens_left([]) == []


class TestOneClock:
    """Hosts whose clocks disagree share one window on Redis's clock: a host an hour ahead does not find the
    window over, and one an hour behind does not hold the next caller back an hour."""

    @pytest.mark.parametrize("skew_seconds", [3600, -3600])
    def test_a_skewed_host_changes_nothing(self, bucket, monkeypatch, skew_seconds):
        assert ratelimit._uses_redis()
        real_time = time.time
        assert ratelimit.acquire(bucket, rate=1, per=60) is True

        with monkeypatch.context() as skewed_host:
            skewed_host.setattr(time, "time", lambda: real_time() + skew_seconds)
            on_the_skewed_host = ratelimit.acquire(bucket, rate=1, per=60)
        back_on_the_first_host = ratelimit.acquire(bucket, rate=1, per=60)

        assert (on_the_skewed_host, back_on_the_first_host) == (False, False)


class TestRedisDown:
    @pytest.fixture(autouse=True)
    def redis_down(self, settings):
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://:hunter2@127.0.0.1:1/0"}}

    def test_calls_are_let_through(self, bucket):
        assert all(ratelimit.acquire(bucket, rate=1) for _ in range(3))

    def test_a_refill_never_raises(self, bucket):
        ratelimit.refill(bucket)

    def test_the_levels_are_unknown(self, bucket):
        assert ratelimit.tokens_left([ratelimit.Budget(bucket, rate=1), ratelimit.Budget(bucket, rate=2)]) == [
            None,
            None,
        ]

    def test_it_is_logged_once_without_secrets(self, bucket, caplog, monkeypatch):
        monkeypatch.setattr(ratelimit, "_redis_down", coordination.OccasionalWarning(ratelimit.logger))

        with caplog.at_level(logging.WARNING, logger="thor.ratelimit"):
            for _ in range(3):
                ratelimit.acquire(bucket, rate=1)

        assert [record.levelname for record in caplog.records] == ["WARNING"]
        assert "letting calls through" in caplog.text
        assert "hunter2" not in caplog.text and "127.0.0.1" not in caplog.text
