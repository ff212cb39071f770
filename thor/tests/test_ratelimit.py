import time
import uuid

import pytest

from thor import ratelimit


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


class TestTokenBucket:
    def test_a_burst_of_rate_then_refusal(self, backend, bucket):
        taken = [ratelimit.acquire(bucket, rate=3) for _ in range(4)]

        assert taken == [True, True, True, False]

    def test_waiting_for_a_refill_succeeds(self, backend, bucket):
        for _ in range(5):
            ratelimit.acquire(bucket, rate=5)
        started = time.monotonic()

        assert ratelimit.acquire(bucket, rate=5, wait=1.0) is True
        assert 0.05 < time.monotonic() - started < 0.6

    def test_a_wait_too_short_for_a_refill_is_refused_without_sleeping(self, backend, bucket):
        ratelimit.acquire(bucket, rate=1, per=60)
        started = time.monotonic()

        assert ratelimit.acquire(bucket, rate=1, per=60, wait=0.5) is False
        assert time.monotonic() - started < 0.1

    def test_buckets_are_independent(self, backend, bucket):
        ratelimit.acquire(bucket, rate=1)

        assert ratelimit.acquire(bucket, rate=1) is False
        assert ratelimit.acquire(f"{bucket}-other", rate=1) is True


class TestRedisDown:
    def test_calls_are_let_through(self, settings, bucket):
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}

        assert all(ratelimit.acquire(bucket, rate=1) for _ in range(3))
