import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

from corsheaders.signals import check_request_enabled
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from identity import caches
from identity.models import Tenant

# Sent with `user` inside the sign-up transaction: what other apps give a new user (the accounts app,
# a paper account) commits or rolls back with the user, and identity need not know about it.
user_registered = Signal()


def _load_tenant_origins() -> frozenset[str]:
    return frozenset(
        origin for allowed in Tenant.objects.values_list("allowed_origins", flat=True) for origin in allowed
    )


def _load_tenant_origins_off_the_event_loop() -> frozenset[str]:
    try:
        return _load_tenant_origins()
    finally:
        connection.close()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def tenant_origins() -> frozenset[str]:
    origins = cache.get(caches.TENANT_ORIGINS_KEY)
    if origins is None:
        if _in_event_loop():
            # Under ASGI, CorsMiddleware asks from the event loop, where the ORM refuses to run:
            # the (rare, cached) lookup goes to a worker thread with its own short-lived connection.
            with ThreadPoolExecutor(max_workers=1) as worker:
                origins = worker.submit(_load_tenant_origins_off_the_event_loop).result()
        else:
            origins = _load_tenant_origins()
        cache.set(caches.TENANT_ORIGINS_KEY, origins, 60)
    return origins


@receiver(check_request_enabled)
def cors_allow_tenant_origins(sender, request, **kwargs):
    # The paths CORS is on for (CORS_URLS_REGEX): the admin and /metrics never answer other origins.
    if not re.match(settings.CORS_URLS_REGEX, request.path_info):
        return False
    return request.headers.get("Origin", "") in tenant_origins()


@receiver([post_save, post_delete], sender=Tenant)
def forget_tenant_origins(sender, **kwargs):
    caches.flush_tenant_origins()
