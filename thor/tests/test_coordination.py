import logging
import threading
import time
import uuid

import pytest

from thor import coordination


@pytest.fixture(params=["redis", "local"])
def backend(request, settings):
    """Every behaviour holds with Redis locks and with the in-process ones of the embedded mode."""
    if request.param == "local":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert coordination.uses_redis() is (request.param == "redis")
    return request.param


@pytest.fixture
def name():
    return f"thor:test:lock:{uuid.uuid4().hex}"


def holder_that_dies(name, timeout):
    """Takes the lock and never releases it, as a process killed in the middle of its call."""
    block = coordination.single_flight(name, timeout=timeout, wait=0)
    assert block.__enter__() is True
    return block


class TestSingleFlight:
    def test_one_holder_at_a_time(self, backend, name):
        with (
            coordination.single_flight(name, timeout=5, wait=0) as first,
            coordination.single_flight(name, timeout=5, wait=0) as second,
        ):
            assert (first, second) == (True, False)

    def test_released_on_leaving_the_block(self, backend, name):
        with coordination.single_flight(name, timeout=5, wait=0):
            pass

        with coordination.single_flight(name, timeout=5, wait=0) as again:
            assert again is True

    def test_released_when_the_block_raises(self, backend, name):
        with pytest.raises(RuntimeError), coordination.single_flight(name, timeout=5, wait=0):
            raise RuntimeError("the call failed")

        with coordination.single_flight(name, timeout=5, wait=0) as again:
            assert again is True

    def test_a_waiter_gets_the_lock_when_the_holder_releases_it(self, backend, name):
        released = threading.Event()
        order = []

        def holder():
            with coordination.single_flight(name, timeout=5, wait=0):
                order.append("holder in")
                released.wait(5)
                order.append("holder out")

        thread = threading.Thread(target=holder)
        thread.start()
        while not order:
            time.sleep(0.01)
        threading.Timer(0.2, released.set).start()

        with coordination.single_flight(name, timeout=5, wait=5) as held:
            order.append("waiter in")
        thread.join(5)

        assert held is True
        assert order == ["holder in", "holder out", "waiter in"]

    def test_a_holder_that_dies_blocks_others_only_until_its_lock_expires(self, backend, name):
        holder_that_dies(name, timeout=0.3)

        with coordination.single_flight(name, timeout=5, wait=5) as held:
            assert held is True

    def test_an_expired_holder_leaving_late_never_frees_the_next_holders_lock(self, backend, name):
        late = holder_that_dies(name, timeout=0.2)
        with coordination.single_flight(name, timeout=5, wait=5) as next_holder:
            late.__exit__(None, None, None)

            with coordination.single_flight(name, timeout=5, wait=0) as third:
                assert (next_holder, third) == (True, False)

    def test_names_are_independent(self, backend, name):
        with (
            coordination.single_flight(name, timeout=5, wait=0),
            coordination.single_flight(f"{name}-other", timeout=5, wait=0) as other,
        ):
            assert other is True


class TestRedisDown:
    @pytest.fixture(autouse=True)
    def redis_down(self, settings):
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://:hunter2@127.0.0.1:1/0"}}

    def test_the_block_runs_unlocked(self, name):
        ran = []
        with coordination.single_flight(name, timeout=5, wait=5) as held:
            ran.append(held)

        assert ran == [False]

    def test_it_is_logged_without_the_password(self, name, caplog, monkeypatch):
        monkeypatch.setattr(coordination, "_redis_lock_down", coordination.OccasionalWarning(coordination.logger))
        with caplog.at_level(logging.WARNING, logger="thor.coordination"):
            for _ in range(3):
                with coordination.single_flight(name, timeout=5, wait=5):
                    pass

        assert len(caplog.records) == 1
        assert "Redis is unreachable" in caplog.text and "hunter2" not in caplog.text


class TestOccasionalWarning:
    def test_logs_once_per_period(self, caplog):
        warn = coordination.OccasionalWarning(logging.getLogger("thor.test"), every_seconds=60)
        with caplog.at_level(logging.WARNING, logger="thor.test"):
            for attempt in range(5):
                warn("Redis is down (%s)", attempt)

        assert [record.getMessage() for record in caplog.records] == ["Redis is down (0)"]

    def test_logs_again_once_the_period_has_passed(self, caplog):
        warn = coordination.OccasionalWarning(logging.getLogger("thor.test"), every_seconds=0.05)
        with caplog.at_level(logging.WARNING, logger="thor.test"):
            warn("down")
            time.sleep(0.1)
            warn("still down")

        assert [record.getMessage() for record in caplog.records] == ["down", "still down"]
