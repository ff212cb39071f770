"""One round trip to the cache for the hot reads: the entries asked for, each decoded only when read.

A cached read asks the cache once, for the user, its session, the account and the ready body, and on this
machine django-redis's `get_many` cost about twice the MGET itself (bench/README.md): its exception
wrapper, a key object per key, redis-py's command machinery twice over, and a decode per value that first
tries every pickle as an integer. Here the keys are made as Django makes them, the MGET goes to the client
django-redis holds, and each pickle is loaded directly, on first use (django-redis writes integers as
digits and everything else as a pickle, which starts with the PROTO opcode; anything else goes through
its own decode). Whether an entry is there at all needs no decoding: the identity cache's user is only
looked at that way (identity.authentication).

Not on Redis (the embedded default's local-memory cache), with another serializer or compressor, it is
`cache.get_many`; when Redis does not answer, every entry is missing: the caller goes on as on a miss (to
the database, or Django's path), and what it then keeps goes through django-redis, which logs the outage.
"""

import pickle
from collections.abc import Callable, Mapping

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django_redis.cache import RedisCache
from django_redis.compressors.identity import IdentityCompressor
from django_redis.serializers.pickle import PickleSerializer
from redis.exceptions import RedisError

_PICKLE_PROTO = b"\x80"


class Fetched(Mapping):
    """Every key asked for, mapped to its value or None when the cache has none; each decoded when first read."""

    def __init__(self, stored: dict, decode: Callable):
        self._stored = stored
        self._decode = decode
        self._decoded = {}

    def __getitem__(self, key):
        if key not in self._decoded:
            stored = self._stored[key]
            self._decoded[key] = None if stored is None else self._decode(stored)
        return self._decoded[key]

    def __contains__(self, key):
        # Mapping's own would decode the entry to answer.
        return key in self._stored

    def __iter__(self):
        return iter(self._stored)

    def __len__(self):
        return len(self._stored)

    def has(self, key) -> bool:
        """Whether the cache holds an entry for this key (None is never stored by the reads), not decoding it."""
        return self._stored.get(key) is not None


def fetch(keys: list[str]) -> Fetched:
    """The entries of these keys in one round trip: what cache.get_many(keys) answers, with a None for each miss."""
    backend = caches[DEFAULT_CACHE_ALIAS]
    client = getattr(backend, "client", None) if isinstance(backend, RedisCache) else None
    if client is None or not _plain_pickles(client):
        found = cache.get_many(keys)
        return Fetched({key: found.get(key) for key in keys}, decode=_as_is)
    try:
        stored = client.get_client(write=False).mget([backend.make_key(key) for key in keys])
    except (RedisError, OSError):
        stored = [None] * len(keys)
    return Fetched(dict(zip(keys, stored, strict=True)), decode=lambda value: _decoded(client, value))


def _plain_pickles(client) -> bool:
    return type(client._serializer) is PickleSerializer and type(client._compressor) is IdentityCompressor


def _decoded(client, value: bytes):
    return pickle.loads(value) if value[:1] == _PICKLE_PROTO else client.decode(value)  # noqa: S301 (our own cache)


def _as_is(value):
    return value
