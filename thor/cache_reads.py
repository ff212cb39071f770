"""`cache.get_many` for the hot reads: the same answer, in one MGET straight on django-redis's Redis client.

A cached read asks the cache once, for the user, its session, the account and the ready body, and on this
machine django-redis's `get_many` cost about twice the MGET itself (bench/README.md): its exception
wrapper, a key object per key, redis-py's command machinery twice over, and a decode per value that first
tries every pickle as an integer. Here the keys are made as Django makes them, the MGET goes to the client
django-redis holds, and each pickle is loaded directly (django-redis writes integers as digits and
everything else as a pickle, which starts with the PROTO opcode; anything else goes through its own decode).

Not on Redis (the embedded default's local-memory cache), with another serializer or compressor, or when
Redis does not answer, it is `cache.get_many` or a miss: a caller that misses goes on to the ordinary path,
which asks again through django-redis and logs the outage its way.
"""

import pickle

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django_redis.cache import RedisCache
from django_redis.compressors.identity import IdentityCompressor
from django_redis.serializers.pickle import PickleSerializer
from redis.exceptions import RedisError

_PICKLE_PROTO = b"\x80"


def get_many(keys: list[str]) -> dict:
    """What cache.get_many(keys) answers: the keys found, with their values; {} when Redis is not there."""
    backend = caches[DEFAULT_CACHE_ALIAS]
    client = getattr(backend, "client", None) if isinstance(backend, RedisCache) else None
    if client is None or not _plain_pickles(client):
        return cache.get_many(keys)
    try:
        values = client.get_client(write=False).mget([backend.make_key(key) for key in keys])
    except (RedisError, OSError):
        return {}
    return {key: _decoded(client, value) for key, value in zip(keys, values, strict=True) if value is not None}


def _plain_pickles(client) -> bool:
    return type(client._serializer) is PickleSerializer and type(client._compressor) is IdentityCompressor


def _decoded(client, value: bytes):
    return pickle.loads(value) if value[:1] == _PICKLE_PROTO else client.decode(value)  # noqa: S301 (our own cache)
