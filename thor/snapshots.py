"""Live broker reads: fresh cache, one upstream call at a time, last-good snapshot on failure.

A read goes: fresh value (a few seconds, absorbs SPA polling) -> one upstream call under a
single-flight lock (concurrent readers wait for it, then read its answer) -> the last-good snapshot
(~5 minutes) when the broker fails or the rate budget is spent. Every answer says where it came from.
The lock is redis-py's (thor.coordination): released by token, freed by expiry when its holder dies.

A caller may pass `present`, how it turns the data into its answer (a serializer's output): it is
computed once per snapshot and kept in the same cache entry, so reads served from the cache do not
redo it. It is keyed by the function's name, so readers presenting the data otherwise never see it.
The fresh presentation is also kept on its own (`{key}:fresh-body`, with its name and as_of): a reader
that only answers it (the API's reads) reads that alone, never unpickling the data behind it, which
for a big account costs more than the rest of the read.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from django.core.cache import cache
from django.utils import timezone

from thor import coordination
from thor.upstream import UpstreamError, UpstreamErrorCode

logger = logging.getLogger("thor.snapshots")
T = TypeVar("T")

# How long a holder may keep the lock (then it expires: a holder that died blocks no one for longer),
# and so how long a reader waits for someone else's call before it makes its own.
LOCK_SECONDS = 15


@dataclass(frozen=True)
class LiveRead(Generic[T]):
    data: T
    source: str  # live | cache | stale
    as_of: datetime
    # present(data) for the snapshot, by present's name: see presented().
    presentations: dict = field(default_factory=dict, compare=False, repr=False)


Present = Callable[[object], object]


def _present_name(present: Present) -> str:
    return f"{present.__module__}.{present.__qualname__}"


def presented(read: LiveRead, present: Present):
    """present(read.data): kept with the snapshot when read_through was given this present, else computed."""
    name = _present_name(present)
    if name in read.presentations:
        return read.presentations[name]
    return present(read.data)


def key(tenant_slug: str, account_id, what: str) -> str:
    return f"thor:{tenant_slug}:{account_id}:{what}"


def _fresh_key(base):
    return f"{base}:fresh"


def _stale_key(base):
    return f"{base}:last-good"


def fresh_body_key(base) -> str:
    return f"{base}:fresh-body"


@dataclass(frozen=True)
class FreshBody:
    as_of: datetime
    body: object


def fresh_body(base, present: Present) -> FreshBody | None:
    """The fresh snapshot as `present` presented it, when there is one (read_through keeps it)."""
    entry = cache.get(fresh_body_key(base))
    if entry is None or entry[0] != _present_name(present):
        return None
    return FreshBody(as_of=entry[1], body=entry[2])


def _lock_key(base):
    return f"{base}:lock"


def _store(base, data, fresh_ttl, stale_ttl, present: Present | None = None) -> LiveRead:
    # (data, as_of, presentations): entries of the (data, as_of) shape, from before presentations, still read.
    presentations = {} if present is None else {_present_name(present): present(data)}
    entry = (data, timezone.now(), presentations)
    fresh: dict[str, tuple] = {_fresh_key(base): entry}
    if present is not None:
        fresh[fresh_body_key(base)] = (_present_name(present), entry[1], presentations[_present_name(present)])
    else:
        # What was kept belongs to the snapshot this one replaces.
        cache.delete(fresh_body_key(base))
    cache.set_many(fresh, fresh_ttl)
    cache.set(_stale_key(base), entry, stale_ttl)
    return _read(entry, "live")


def _read(entry: tuple, source: str) -> LiveRead:
    return LiveRead(data=entry[0], source=source, as_of=entry[1], presentations=entry[2] if len(entry) > 2 else {})


def _failed_key(base):
    return f"{base}:failed"


def _stale_or_raise(base, error: UpstreamError) -> LiveRead:
    stale = peek(base)
    if stale is None or error.permanent:
        raise error
    logger.warning("Serving last-good snapshot for %s: %s", base, error.code)
    return stale


def _remember_failure(base, error: UpstreamError, seconds: float) -> None:
    # Readers in the next few seconds answer from the snapshot instead of queueing on a broker
    # that just failed. Stored as plain values: UpstreamError does not survive pickling.
    cache.set(_failed_key(base), (str(error.code), error.message, error.retry_after), seconds)


def _recent_failure(base) -> UpstreamError | None:
    failure = cache.get(_failed_key(base))
    if failure is None:
        return None
    code, message, retry_after = failure
    return UpstreamError(message, code=UpstreamErrorCode(code), retry_after=retry_after)


def peek(key: str) -> LiveRead | None:
    """The last-good snapshot, without calling anyone (None when there is none)."""
    entry = cache.get(_stale_key(key))
    return None if entry is None else _read(entry, "stale")


def _fresh(base) -> LiveRead | None:
    entry = cache.get(_fresh_key(base))
    return None if entry is None else _read(entry, "cache")


def read_through(
    key: str,
    fetch: Callable[[], T],
    *,
    fresh_ttl: float = 5,
    stale_ttl: float = 300,
    force: bool = False,
    present: Present | None = None,
) -> LiveRead[T]:
    if not force and (fresh := _fresh(key)) is not None:
        return fresh
    if not force and (failure := _recent_failure(key)) is not None:
        return _stale_or_raise(key, failure)

    asked_at = timezone.now()
    with coordination.single_flight(cache.make_key(_lock_key(key)), timeout=LOCK_SECONDS, wait=LOCK_SECONDS):
        # Whoever held the lock before us stored its answer before releasing it: that answer is ours too,
        # even when forced, if it was fetched after we asked.
        if (fresh := _fresh(key)) is not None and (not force or fresh.as_of >= asked_at):
            return fresh
        if not force and (failure := _recent_failure(key)) is not None:
            return _stale_or_raise(key, failure)
        try:
            # Stored before the lock is released, so the next reader to take the lock finds it.
            return _store(key, fetch(), fresh_ttl, stale_ttl, present)
        except UpstreamError as error:
            if not error.permanent:
                _remember_failure(key, error, fresh_ttl)
            return _stale_or_raise(key, error)


def forget(*keys: str) -> None:
    """Drop the fresh copies (after a write such as an order), keeping the last-good snapshots; one
    round trip to the cache for all the keys."""
    cache.delete_many(forgotten_names(*keys))


def forgotten_names(*keys: str) -> list[str]:
    """The cache entries forget() deletes (for a caller that deletes them along with other work)."""
    return [name for key in keys for name in (_fresh_key(key), fresh_body_key(key), _failed_key(key))]
