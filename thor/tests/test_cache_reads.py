"""thor.cache_reads.get_many answers what cache.get_many answers, on Redis and off it."""

from decimal import Decimal

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


def some_values(alice) -> dict:
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


class TestTheSameAnswer:
    def test_on_redis(self, alice):
        with override_settings(CACHES=redis_cache()):
            keys = some_values(alice)

            assert cache_reads.get_many(keys) == cache.get_many(keys)
            assert cache_reads.get_many(keys)["number"] == 8
            assert "missing" not in cache_reads.get_many(keys)

    def test_with_another_serializer(self, alice):
        with override_settings(CACHES=redis_cache(SERIALIZER="django_redis.serializers.json.JSONSerializer")):
            cache.set("number", 7)
            cache.set("listed", [1, "two"])

            assert cache_reads.get_many(["number", "listed", "missing"]) == {"number": 7, "listed": [1, "two"]}

    def test_off_redis(self, alice):
        with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
            keys = some_values(alice)

            assert cache_reads.get_many(keys) == cache.get_many(keys)


class TestRedisGone:
    def test_is_a_miss(self):
        with override_settings(CACHES=redis_cache("redis://127.0.0.1:1/0")):
            assert cache_reads.get_many(["anything", "else"]) == {}
