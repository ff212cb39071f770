"""What Thor's processes coordinate through Redis, or through this process alone in the embedded mode.

With the django-redis cache, locks are redis-py's `Lock` (taken with SET NX PX, released by a Lua
script that compares the holder's token, so a holder whose lock expired never frees another's).
With the locmem cache (embedded mode: one process) the same lock lives in this process.
Neither ever fails a request on its own: when Redis is unreachable the caller goes on unlocked.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import LockError, RedisError

logger = logging.getLogger("thor.coordination")

# How long a waiter sleeps between two tries at a Redis lock (redis-py polls).
POLL_SECONDS = 0.02


def uses_redis() -> bool:
    return "django_redis" in settings.CACHES["default"]["BACKEND"]


def redis_client():
    """The default cache's Redis connection; raises RedisError (or ConnectionError) when it is down."""
    from django_redis import get_redis_connection

    return get_redis_connection("default")


# What `cache_that_raises()` raises when Redis cannot be reached.
CACHE_ERRORS = (ConnectionInterrupted, RedisError, OSError)


def cache_that_raises():
    """The default cache with a Redis outage raised (CACHE_ERRORS), not answered as a miss.

    The settings let django-redis ignore its errors (IGNORE_EXCEPTIONS) so that an outage never fails a
    request on its own; a throttle or a one-time ticket must tell "nothing stored" from "nothing reachable",
    and asks django-redis's client, which raises. The local-memory cache (embedded mode) cannot fail.
    """
    from django.core.cache import cache

    if not uses_redis():
        return cache
    redis_cache: Any = cache  # django-redis's RedisCache, which ships no type information
    return redis_cache.client


class OccasionalWarning:
    """A warning logged at most once every `every_seconds`: an outage seen on every call must not flood the log."""

    def __init__(self, log: logging.Logger, every_seconds: float = 60.0):
        self.log = log
        self.every_seconds = every_seconds
        self._last: float | None = None
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether a warning may go out now (it is then counted as sent)."""
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.every_seconds:
                return False
            self._last = now
            return True

    def __call__(self, message: str, *args) -> None:
        if self.due():
            self.log.warning(message, *args)


_redis_lock_down = OccasionalWarning(logger)


class _LocalLock:
    """redis-py's Lock in one process: a name held by one token until released or `timeout` passes."""

    _changed = threading.Condition()
    _held: dict[str, tuple[str, float]] = {}

    def __init__(self, name: str, timeout: float):
        self.name, self.timeout, self.token = name, timeout, uuid.uuid4().hex

    def acquire(self, wait: float) -> bool:
        deadline = time.monotonic() + wait
        with self._changed:
            while True:
                now = time.monotonic()
                holder = self._held.get(self.name)
                if holder is None or holder[1] <= now:
                    self._held[self.name] = (self.token, now + self.timeout)
                    return True
                if now >= deadline:
                    return False
                # Woken by a release, or when the holder's lock expires, whichever is first.
                self._changed.wait(min(deadline, holder[1]) - now)

    def release(self) -> None:
        with self._changed:
            if self._held.get(self.name, ("",))[0] == self.token:
                del self._held[self.name]
                self._changed.notify_all()


@contextmanager
def single_flight(name: str, *, timeout: float, wait: float) -> Iterator[bool]:
    """Hold the lock `name` for the block: True when held, False when it could not be had.

    Waits up to `wait` seconds for it; a holder that dies frees it after `timeout` seconds. When
    it could not be had (the wait ran out, or Redis is down) the block still runs, unlocked: the
    caller then makes its call directly rather than fail.
    """
    if not uses_redis():
        lock = _LocalLock(name, timeout)
        held = lock.acquire(wait)
        try:
            yield held
        finally:
            if held:
                lock.release()
        return

    try:
        redis_lock = redis_client().lock(name, timeout=timeout, sleep=POLL_SECONDS, blocking_timeout=wait)
        held = redis_lock.acquire()
    except RedisError as error:
        _redis_lock_down("Going on without the lock %s: Redis is unreachable (%s)", name, type(error).__name__)
        redis_lock, held = None, False
    try:
        yield held
    finally:
        if held:
            try:
                redis_lock.release()
            except LockError:
                # Held past its timeout: someone else may hold it now, and the token check left theirs alone.
                logger.info("The lock %s expired before its holder released it", name)
            except RedisError:
                pass  # it expires on its own
