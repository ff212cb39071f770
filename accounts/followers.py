"""Which accounts an order socket follows right now, for work that only matters while someone watches
(the Schwab order poll, accounts.polling).

A socket marks the accounts it follows in the cache for THOR_WS_FOLLOW_SECONDS before it says
`subscribed` (accounts.consumers). While it is open they are marked again every third of that, by its
server process for all its sockets at once: one call for the union of their accounts (accounts.renewal),
rather than a call per socket that a thousand sockets made some 33 times a second. Nothing ever unmarks
an account, since another socket, in this process or another, may follow it too: a mark runs out by
itself at most THOR_WS_FOLLOW_SECONDS after the last socket that renewed it closed or died.

A cache outage never fails a socket: marking then does nothing (logged at most once a minute), and
no account looks followed until the cache is back.
"""

import logging
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache

from accounts import caches
from thor.coordination import OccasionalWarning

logger = logging.getLogger("accounts.followers")
_cache_down = OccasionalWarning(logger)


def accounts_mark_followed(account_ids: Iterable[int]) -> None:
    """Mark the accounts as followed for THOR_WS_FOLLOW_SECONDS more: one cache call for them all."""
    marks = {caches.followed_key(account_id): 1 for account_id in account_ids}
    if not marks:
        return
    try:
        cache.set_many(marks, timeout=settings.THOR_WS_FOLLOW_SECONDS)
    except Exception as error:
        # The type only: a connection error's text may carry the Redis URL.
        _cache_down("Could not mark followed accounts, the cache is unreachable: %s", type(error).__name__)


def followed_account_ids(account_ids: Iterable[int]) -> set[int]:
    """The ones among `account_ids` that some socket follows: one cache call for them all."""
    keys = {caches.followed_key(account_id): account_id for account_id in account_ids}
    if not keys:
        return set()
    try:
        marked = cache.get_many(list(keys))
    except Exception as error:
        _cache_down("Could not read followed accounts, the cache is unreachable: %s", type(error).__name__)
        return set()
    return {keys[key] for key in marked}
