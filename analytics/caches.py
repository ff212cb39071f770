"""Every cache key analytics uses, and the functions that flush them (zulip's zerver/lib/cache.py is the model).

- Answers of the four reads, for one snapshot period: keyed by the read's parameters and the `as_of` of the
  snapshot they were computed from, so a new snapshot is a new key and needs no flush.
- The first-snapshot marker: a failed attempt to take an underlying's first snapshot is not retried by every
  reader within a snapshot period. A snapshot stored (by the beat task or a reader) flushes it on commit.
"""

import hashlib
import json

from django.conf import settings
from django.core.cache import cache

PREFIX = "thor:analytics"


def answer_key(read: str, params: dict) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"{PREFIX}:{read}:{digest}"


def cached_answer(read: str, params: dict, compute) -> tuple[dict, bool]:
    """compute() kept for one snapshot period under (read, params); and whether it came from the cache."""
    key = answer_key(read, params)
    body = cache.get(key)
    if body is not None:
        return body, True
    body = compute()
    cache.set(key, body, settings.THOR_ANALYTICS_SNAPSHOT_SECONDS)
    return body, False


def first_snapshot_failed_key(underlying: str) -> str:
    return f"{PREFIX}:refresh-failed:{underlying}"


def first_snapshot_lock_key(underlying: str) -> str:
    return f"{PREFIX}:refresh:{underlying}"


def first_snapshot_failed(underlying: str) -> bool:
    return bool(cache.get(first_snapshot_failed_key(underlying)))


def remember_first_snapshot_failed(underlying: str) -> None:
    cache.set(first_snapshot_failed_key(underlying), True, settings.THOR_ANALYTICS_SNAPSHOT_SECONDS)


def flush_first_snapshot_failed(underlying: str) -> None:
    cache.delete(first_snapshot_failed_key(underlying))
