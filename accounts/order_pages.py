"""The first page of an account's orders, kept rendered until one of the account's orders changes.

An SPA polls its orders page every few seconds, and serializing fifty orders costs far more than the
rest of the request. So the answer to a first page (no cursor) is kept as the bytes sent, with the
account's orders version it was built from (`thor:orders-version:{account_id}`), and it is sent again
only while that version is still the account's. Every saved or deleted order moves the version on once
its transaction commits, so a page is never older than the orders it shows:

- a page builder reads the version *before* it reads the orders (making one when there is none), so a
  change that commits after that read leaves the page under an older version, never sent;
- a version starts at the time in nanoseconds, so one that expired and was made again never matches a
  page kept from before.

A variant is everything else the answer depends on: the query (filters, limit) and the host and scheme
in the `next` link. Cursor pages are built every time (they are read once, when scrolling).
"""

import contextlib
import hashlib
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import Order

VERSION_SECONDS = 24 * 3600


def version_key(account_id: int) -> str:
    return f"thor:orders-version:{account_id}"


def page_key(account_id: int, variant: str) -> str:
    return f"thor:orders-page:{account_id}:{hashlib.sha256(variant.encode()).hexdigest()[:32]}"


def page_variant(request, *, cursor_param: str) -> str | None:
    """What the page depends on besides the account; None for a page that is not kept (a cursor's)."""
    # Django's request or DRF's around it: the same query. Most reads have none to parse.
    if not settings.THOR_ORDER_PAGE_SECONDS:
        return None
    query = []
    if request.META.get("QUERY_STRING"):
        if request.GET.get(cursor_param):
            return None
        query = sorted((name, value) for name, values in request.GET.lists() for value in values)
    return repr((request.scheme, request.get_host(), query))


def page_cache_keys(*, account_id: int, variant: str) -> list[str]:
    return [version_key(account_id), page_key(account_id, variant)]


def _page_get(*, account_id: int, variant: str, prefetched: dict | None = None) -> tuple[bytes | None, int]:
    """(The kept page, or None) and the version a page built now must be kept under."""
    keys = page_cache_keys(account_id=account_id, variant=variant)
    found = prefetched if prefetched is not None and all(key in prefetched for key in keys) else cache.get_many(keys)
    version, page = found.get(keys[0]), found.get(keys[1])
    if version is None:
        # Before the orders are read: see the module.
        cache.add(keys[0], time.time_ns(), VERSION_SECONDS)
        version = cache.get(keys[0])
    if page is not None and page[0] == version:
        return page[1], version
    return None, version


def _page_keep(*, account_id: int, variant: str, version: int | None, body: bytes) -> None:
    if version is not None:
        cache.set(page_key(account_id, variant), (version, body), settings.THOR_ORDER_PAGE_SECONDS)


def page_kept_or_built(
    *, account_id: int, variant: str | None, build: Callable[[], bytes], prefetched: dict | None = None
) -> bytes:
    """The kept page of this variant while it is current, else build() (kept for the next read). A page
    that is not kept (variant None) is built every time; a build that raises (a bad query) keeps nothing."""
    if variant is None:
        return build()
    kept, version = _page_get(account_id=account_id, variant=variant, prefetched=prefetched)
    if kept is not None:
        return kept
    body = build()
    _page_keep(account_id=account_id, variant=variant, version=version, body=body)
    return body


def page_kept(*, account_id: int, variant: str | None, prefetched: dict | None = None) -> bytes | None:
    """The kept page of this variant while it is current; None when there is none to send."""
    if variant is None:
        return None
    return _page_get(account_id=account_id, variant=variant, prefetched=prefetched)[0]


def orders_changed(account_id: int) -> None:
    """Every kept page of the account is out of date."""
    # No version (ValueError): no page is kept under one, and the next builder makes a new one.
    with contextlib.suppress(ValueError):
        cache.incr(version_key(account_id))


@receiver(post_save, sender=Order)
@receiver(post_delete, sender=Order)
def _orders_changed_on_commit(sender, instance, **kwargs):
    account_id = instance.account_id
    # robust: the change is committed whatever happens to the cache.
    transaction.on_commit(lambda: orders_changed(account_id), robust=True)
