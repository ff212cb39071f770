"""thor.cache_reads.fetch answers what cache.get_many answers (a None for each miss), on Redis and off it."""

import pickle
from decimal import Decimal
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import override_settings

from identity.models import User
from thor import cache_reads

pytestmark = pytest.mark.django_db

REDIS_OPTIONS = {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2}


def redis_cache(location=None, **options):
    from django.conf import settings

    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": location or settings.CACHES["default"]["LOCATION"],
            "KEY_PREFIX": "thor-cache-reads",
            "OPTIONS": {**REDIS_OPTIONS, **options},
        }
    }


def some_values(alice) -> list[str]:
    cache.set("number", 7)
    cache.incr("number")
    cache.set("negative", -3)
    cache.set("text", "live")
    cache.set("digits-as-text", "12345")
    cache.set("bytes", b"\x80not a pickle" * 2000)
    cache.set("money", (Decimal("100.25"), {"nested": [1, 2]}))
    cache.set("user", User.objects.get(pk=alice.pk))
    cache.set("none", None)
    return ["number", "negative", "text", "digits-as-text", "bytes", "money", "user", "none", "missing"]


def as_get_many(fetched) -> dict:
    """What cache.get_many answers: the entries found (a stored None is one, as the local-memory cache keeps it)."""
    return {key: value for key, value in fetched.items() if value is not None or key == "none"}


class TestTheSameAnswer:
    def test_on_redis(self, alice):
        with override_settings(CACHES=redis_cache()):
            keys = some_values(alice)

            assert as_get_many(cache_reads.fetch(keys)) == cache.get_many(keys)
            fetched = cache_reads.fetch(keys)
            assert fetched["number"] == 8 and fetched["missing"] is None and set(fetched) == set(keys)

    def test_an_entry_is_decoded_only_when_read(self, alice):
        with override_settings(CACHES=redis_cache()):
            cache.set("user", User.objects.get(pk=alice.pk))
            cache.set("other", "value")
            with mock.patch("thor.cache_reads.pickle.loads", wraps=pickle.loads) as loads:
                fetched = cache_reads.fetch(["user", "other", "missing"])

                assert fetched.has("user") and not fetched.has("missing")
                assert "user" in fetched and "missing" in fetched and "not asked for" not in fetched
                assert loads.call_count == 0
                assert fetched["other"] == "value" and fetched["other"] == "value"
                assert loads.call_count == 1

    def test_with_another_serializer(self, alice):
        with override_settings(CACHES=redis_cache(SERIALIZER="django_redis.serializers.json.JSONSerializer")):
            cache.set("number", 7)
            cache.set("listed", [1, "two"])

            fetched = cache_reads.fetch(["number", "listed", "missing"])

            assert dict(fetched) == {"number": 7, "listed": [1, "two"], "missing": None}

    def test_off_redis(self, alice):
        with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
            keys = some_values(alice)

            assert as_get_many(cache_reads.fetch(keys)) == cache.get_many(keys)


class TestRedisGone:
    def test_is_a_miss(self):
        with override_settings(CACHES=redis_cache("redis://127.0.0.1:1/0")):
            fetched = cache_reads.fetch(["anything", "else"])

            assert dict(fetched) == {"anything": None, "else": None} and not fetched.has("anything")
