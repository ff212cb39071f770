"""Open order sockets, counted in the cache (Redis in production, so across every ASGI process).

The counts back the per-user cap (THOR_WS_MAX_CONNECTIONS_PER_USER) and `GET /api/ws/status`. A
process that dies without closing its sockets leaves its counts behind until the keys expire a day
after the user's last connection; the cap is a guard against runaway clients, not an invoice.
"""

import logging

from django.conf import settings
from django.core.cache import cache

from accounts import caches

logger = logging.getLogger("accounts.ws_connections")

KINDS = ("account", "all")
COUNT_TTL_SECONDS = 24 * 3600


def _add(key: str, delta: int) -> int | None:
    try:
        try:
            counted = cache.incr(key, delta)
        except ValueError:
            # The first socket since the key expired (django-redis's incr refuses a missing key).
            counted = max(0, delta)
            if not cache.add(key, counted, COUNT_TTL_SECONDS):
                counted = cache.incr(key, delta)
        cache.touch(key, COUNT_TTL_SECONDS)
        return counted
    except Exception:
        # A cache outage degrades to no cap and no counts; it never refuses a socket on its own.
        logger.warning("Could not count order sockets at %s", key, exc_info=True)
        return None


def connection_open(*, user, kind: str) -> bool:
    """Count a new socket of the user; False (and nothing counted) when it would pass the cap."""
    opened = _add(caches.ws_connections_user_key(user.pk), 1)
    if opened is not None and opened > settings.THOR_WS_MAX_CONNECTIONS_PER_USER:
        _add(caches.ws_connections_user_key(user.pk), -1)
        return False
    for key in caches.ws_connections_kind_keys(tenant_id=user.tenant_id, kind=kind):
        _add(key, 1)
    return True


def connection_close(*, user, kind: str) -> None:
    for key in (
        caches.ws_connections_user_key(user.pk),
        *caches.ws_connections_kind_keys(tenant_id=user.tenant_id, kind=kind),
    ):
        _add(key, -1)


def _count(key: str) -> int:
    try:
        return max(0, int(cache.get(key) or 0))
    except Exception:
        return 0


def connection_counts(*, tenant_id: int | None) -> dict[str, int]:
    """Open sockets by kind: everyone's (tenant_id None) or one tenant's."""
    return {
        kind: _count(
            caches.ws_connections_kind_keys(tenant_id=tenant_id or 0, kind=kind)[0 if tenant_id is None else 1]
        )
        for kind in KINDS
    }


def user_connection_count(*, user) -> int:
    return _count(caches.ws_connections_user_key(user.pk))
