"""Live broker reads: fresh cache, one upstream call at a time, last-good snapshot on failure.

A read goes: fresh value (a few seconds, absorbs SPA polling) -> one upstream call under a
single-flight lock (concurrent readers wait for it) -> the last-good snapshot (~5 minutes)
when the broker fails or the rate budget is spent. Every answer says where it came from.
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from django.core.cache import cache
from django.utils import timezone

from brokers.adapters.errors import BrokerError, BrokerErrorCode

logger = logging.getLogger("thor.snapshots")
T = TypeVar("T")

LOCK_SECONDS = 15
WAIT_STEP_SECONDS = 0.02


@dataclass(frozen=True)
class LiveRead(Generic[T]):
    data: T
    source: str  # live | cache | stale
    as_of: datetime


def key(tenant_slug: str, account_id, what: str) -> str:
    return f"thor:{tenant_slug}:{account_id}:{what}"


def _fresh_key(base):
    return f"{base}:fresh"


def _stale_key(base):
    return f"{base}:last-good"


def _lock_key(base):
    return f"{base}:lock"


def _store(base, data, fresh_ttl, stale_ttl) -> LiveRead:
    entry = (data, timezone.now())
    cache.set(_fresh_key(base), entry, fresh_ttl)
    cache.set(_stale_key(base), entry, stale_ttl)
    return LiveRead(data=data, source="live", as_of=entry[1])


def _failed_key(base):
    return f"{base}:failed"


def _stale_or_raise(base, error: BrokerError) -> LiveRead:
    stale = peek(base)
    if stale is None or error.permanent:
        raise error
    logger.warning("Serving last-good snapshot for %s: %s", base, error.code)
    return stale


def _remember_failure(base, error: BrokerError, seconds: float) -> None:
    # Readers in the next few seconds answer from the snapshot instead of queueing on a broker
    # that just failed. Stored as plain values: BrokerError does not survive pickling.
    cache.set(_failed_key(base), (str(error.code), error.message, error.retry_after), seconds)


def _recent_failure(base) -> BrokerError | None:
    failure = cache.get(_failed_key(base))
    if failure is None:
        return None
    code, message, retry_after = failure
    return BrokerError(message, code=BrokerErrorCode(code), retry_after=retry_after)


def peek(key: str) -> LiveRead | None:
    """The last-good snapshot, without calling anyone (None when there is none)."""
    entry = cache.get(_stale_key(key))
    return None if entry is None else LiveRead(data=entry[0], source="stale", as_of=entry[1])


def _fresh(base) -> LiveRead | None:
    entry = cache.get(_fresh_key(base))
    return None if entry is None else LiveRead(data=entry[0], source="cache", as_of=entry[1])


def read_through(
    key: str, fetch: Callable[[], T], *, fresh_ttl: float = 5, stale_ttl: float = 300, force: bool = False
) -> LiveRead[T]:
    if not force and (fresh := _fresh(key)) is not None:
        return fresh
    if not force and (failure := _recent_failure(key)) is not None:
        return _stale_or_raise(key, failure)

    token = uuid.uuid4().hex
    deadline = time.monotonic() + LOCK_SECONDS
    # add() is None when the cache is down: then there is no lock to wait for, call directly.
    while cache.add(_lock_key(key), token, LOCK_SECONDS) is False:
        # Someone else is calling the broker: wait for their answer rather than add a call.
        if (fresh := _fresh(key)) is not None:
            return fresh
        if (failure := _recent_failure(key)) is not None:
            return _stale_or_raise(key, failure)
        if time.monotonic() > deadline:
            break
        time.sleep(WAIT_STEP_SECONDS)
    try:
        # The previous holder may have stored its answer between our last look and our add().
        if not force and (fresh := _fresh(key)) is not None:
            return fresh
        # Stored before the lock is released, so the next reader to take the lock finds it.
        return _store(key, fetch(), fresh_ttl, stale_ttl)
    except BrokerError as error:
        if not error.permanent:
            _remember_failure(key, error, fresh_ttl)
        return _stale_or_raise(key, error)
    finally:
        if cache.get(_lock_key(key)) == token:
            cache.delete(_lock_key(key))


def forget(key: str) -> None:
    """Drop the fresh copy (after a write such as an order), keeping the last-good snapshot."""
    cache.delete_many([_fresh_key(key), _failed_key(key)])
