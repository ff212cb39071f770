"""Readiness of each part Thor stands on: database, cache, channel layer, Celery broker."""

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger("thor.health")


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_cache():
    # The Redis cache swallows its own errors (so requests degrade), so ask Redis directly.
    if "django_redis" in settings.CACHES["default"]["BACKEND"]:
        from django_redis import get_redis_connection

        get_redis_connection("default").ping()
        return
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", 5)
    if cache.get(key) != "ok":
        raise RuntimeError("cache did not return what was written")


def check_channel_layer():
    layer = get_channel_layer()

    async def round_trip():
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        return await layer.receive(channel)

    if async_to_sync(round_trip)().get("type") != "health.ping":
        raise RuntimeError("channel layer lost the message")


def check_celery_broker():
    from thor.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)


CHECKS = {
    "database": check_database,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "celery_broker": check_celery_broker,
}


def run_check(name) -> str:
    """`ok` or `error: <class>`."""
    try:
        CHECKS[name]()
        return "ok"
    except Exception as exc:
        # The page is public: the error class only; the details go to the log.
        logger.warning("Health check %s failed", name, exc_info=True)
        return f"error: {type(exc).__name__}"


def run_checks():
    return {name: run_check(name) for name in CHECKS}


class HealthView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Readiness of database, cache, channel layer and Celery broker",
        responses={
            200: inline_serializer("Health", {"status": serializers.CharField(), "checks": serializers.DictField()}),
            503: inline_serializer(
                "HealthDown", {"status": serializers.CharField(), "checks": serializers.DictField()}
            ),
        },
    )
    def get(self, request):
        checks = run_checks()
        healthy = all(result == "ok" for result in checks.values())
        return Response({"status": "ok" if healthy else "degraded", "checks": checks}, status=200 if healthy else 503)
