"""The first page of an account's orders, kept until one of the account's orders changes.

An SPA asks for its orders page often, and building fifty orders costs far more than the rest of the
request. So the answer to a first page (no cursor) is kept, with the account's orders version it was
built from (accounts.caches), and it is answered again only while that version is still the account's.
Every saved or deleted order moves the version on once its transaction commits, so a page is never older
than the orders it shows:

- a page builder reads the version *before* it reads the orders (making one when there is none), so a
  change that commits after that read leaves the page under an older version, never answered;
- a version starts at the time in nanoseconds, so one that expired and was made again never matches a
  page kept from before.

A variant is everything else the answer depends on: the query (filters, limit) and the host and scheme
in the `next` link. Cursor pages are built every time (they are read once, when scrolling).
"""

import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache

from accounts.caches import orders_page_key, orders_version_key

VERSION_SECONDS = 24 * 3600


def page_variant(request, *, cursor_param: str) -> str | None:
    """What the page depends on besides the account; None for a page that is not kept (a cursor's)."""
    if not settings.THOR_ORDER_PAGE_SECONDS:
        return None
    query = []
    if request.META.get("QUERY_STRING"):
        if request.GET.get(cursor_param):
            return None
        query = sorted((name, value) for name, values in request.GET.lists() for value in values)
    return repr((request.scheme, request.get_host(), query))


def _page_get(*, account_id: int, variant: str) -> tuple[dict | None, int | None]:
    """(The kept page, or None) and the version a page built now must be kept under."""
    keys = [orders_version_key(account_id), orders_page_key(account_id, variant)]
    found = cache.get_many(keys)
    version, page = found.get(keys[0]), found.get(keys[1])
    if version is None:
        # Before the orders are read: see the module.
        cache.add(keys[0], time.time_ns(), VERSION_SECONDS)
        version = cache.get(keys[0])
    if page is not None and page[0] == version:
        return page[1], version
    return None, version


def page_kept_or_built(*, account_id: int, variant: str | None, build: Callable[[], dict]) -> dict:
    """The kept page of this variant while it is current, else build() (kept for the next read). A page
    that is not kept (variant None) is built every time; a build that raises (a bad query) keeps nothing."""
    if variant is None:
        return build()
    kept, version = _page_get(account_id=account_id, variant=variant)
    if kept is not None:
        return kept
    page = build()
    if version is not None:
        cache.set(orders_page_key(account_id, variant), (version, page), settings.THOR_ORDER_PAGE_SECONDS)
    return page
