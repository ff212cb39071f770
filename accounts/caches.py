"""Every cache entry the accounts app keeps: its key and how it is flushed (one home, as zulip's
zerver/lib/cache.py).

- a live read's account, `thor:read-account:{user_id}:{ref}`, kept THOR_READ_CACHE_SECONDS (at most 5) by
  accounts.selectors.account_for_read_get, with its connection's state and its tenant's slug: a read
  answered from the snapshot cache runs no SQL. Only live accounts: a paper read computes from its rows
  (and its cash) every time. Flushed once a save or delete of the account or its connection commits, and
  when a broker session ends (brokers.signals.connection_ended, sent on commit); a bulk update that
  changes them must call flush_read_accounts_of_connections (or is seen within the TTL);
- the live snapshots of an account (thor.snapshots: fresh, last good), `thor:{tenant}:{account}:{what}`,
  flushed (fresh copies only) when an order changes the account;
- the first page of an account's orders, kept with the orders version it was built from
  (`thor:orders-version:{account_id}`, `thor:orders-page:{account_id}:{variant}`, accounts.order_pages);
  every committed save or delete of one of its orders moves the version on;
- the counts of open order sockets (accounts.ws_connections) and the accounts a socket follows
  (accounts.followers), expiring on their own;
- when each Schwab account's orders were last polled (accounts.polling), and a Schwab connection's account
  numbers (accounts.schwab), each kept for its own period (paper prices, and the quotes live orders' price
  bands are set from, are the market's quotes: market.caches).
"""

import contextlib
import hashlib
import logging
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver

from accounts.models import Order, TradingAccount
from brokers.models import BrokerConnection
from brokers.signals import connection_ended
from thor import coordination, snapshots

logger = logging.getLogger("accounts.caches")

PRIMARY = "primary"
LIVE_SNAPSHOTS = ("positions", "holdings", "funds", "orders")


# --- a live read's account ----------------------------------------------------------------------


def read_account_key(user_id, account_ref: str) -> str:
    return f"thor:read-account:{user_id}:{account_ref}"


def flush_read_accounts(*, user_id, account_id) -> None:
    """Both names a cached account may have: its id and, for whichever is primary now or was, `primary`."""
    cache.delete_many([read_account_key(user_id, PRIMARY), read_account_key(user_id, str(account_id))])


def flush_read_accounts_of_connections(connection_ids) -> None:
    accounts = TradingAccount.objects.filter(connection_id__in=connection_ids).values_list("pk", "user_id")
    keys = [
        key
        for pk, user_id in accounts
        for key in (read_account_key(user_id, PRIMARY), read_account_key(user_id, str(pk)))
    ]
    if keys:
        cache.delete_many(keys)


# --- live snapshots -----------------------------------------------------------------------------


def live_snapshot_key(account: TradingAccount, what: str) -> str:
    return snapshots.key(account.user.tenant.slug, account.pk, what)


def flush_live_snapshots(*, account: TradingAccount) -> None:
    """An order changed the account: the next read goes to the broker (the last-good copies stay)."""
    snapshots.forget(*(live_snapshot_key(account, what) for what in LIVE_SNAPSHOTS))


def flush_after_placement(*, account: TradingAccount) -> None:
    """A placement's answer is committed: flush_live_snapshots and flush_order_pages in one round trip to
    Redis (a pipeline), not two. As every cache call here, a Redis outage fails nothing."""
    if not coordination.uses_redis():
        flush_live_snapshots(account=account)
        flush_order_pages(account.pk)
        return
    names = snapshots.forgotten_names(*(live_snapshot_key(account, what) for what in LIVE_SNAPSHOTS))
    client: Any = cache.client  # django-redis's client, which ships no type information
    try:
        pipeline = client.get_client(write=True).pipeline(transaction=False)
        pipeline.delete(*(client.make_key(name) for name in names))
        pipeline.eval(_INCR_IF_EXISTS, 1, client.make_key(orders_version_key(account.pk)), 1)
        pipeline.execute()
    except coordination.CACHE_ERRORS:
        logger.warning("Caches of account %s not flushed after a placement (Redis unreachable)", account.pk)


# --- the first page of orders -------------------------------------------------------------------


def orders_version_key(account_id: int) -> str:
    return f"thor:orders-version:{account_id}"


def orders_page_key(account_id: int, variant: str) -> str:
    return f"thor:orders-page:{account_id}:{hashlib.sha256(variant.encode()).hexdigest()[:32]}"


def flush_order_pages(account_id: int) -> None:
    """Every kept page of the account is out of date."""
    # No version (ValueError): no page is kept under one, and the next builder makes a new one.
    with contextlib.suppress(ValueError):
        cache.incr(orders_version_key(account_id))


# cache.incr as django-redis runs it: a version is moved on, never made (see accounts.order_pages).
_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
"""


# --- sockets, polling, Schwab's account numbers -----------------------------------------------


def ws_connections_user_key(user_id: int) -> str:
    return f"ws-connections:user:{user_id}"


def ws_connections_kind_keys(*, tenant_id: int, kind: str) -> tuple[str, str]:
    return f"ws-connections:kind:{kind}", f"ws-connections:tenant:{tenant_id}:kind:{kind}"


def followed_key(account_id: int) -> str:
    return f"thor:ws-followed:{account_id}"


def schwab_polled_at_key(account_id: int) -> str:
    return f"thor:schwab-polled:{account_id}"


def schwab_account_numbers_key(connection: BrokerConnection) -> str:
    return snapshots.key(connection.user.tenant.slug, f"connection-{connection.pk}", "schwab-account-numbers")


def schwab_accounts_key(connection: BrokerConnection, *, tenant_slug: str) -> str:
    return snapshots.key(tenant_slug, f"connection-{connection.pk}", "schwab-accounts")


# --- flushed on commit --------------------------------------------------------------------------
# After the commit, never before: a read in between would cache the rows as they were again. robust: the
# change is committed whatever happens to the cache.


@receiver(post_save, sender=TradingAccount)
@receiver(post_delete, sender=TradingAccount)
def _account_changed(sender, instance, **kwargs):
    user_id, account_id = instance.user_id, instance.pk
    transaction.on_commit(lambda: flush_read_accounts(user_id=user_id, account_id=account_id), robust=True)


@receiver(post_save, sender=BrokerConnection)
@receiver(pre_delete, sender=BrokerConnection)
def _connection_changed(sender, instance, **kwargs):
    # The accounts are named now: after a delete they no longer point at it (SET_NULL).
    keys = [
        key
        for pk, user_id in TradingAccount.objects.filter(connection_id=instance.pk).values_list("pk", "user_id")
        for key in (read_account_key(user_id, PRIMARY), read_account_key(user_id, str(pk)))
    ]
    if keys:
        transaction.on_commit(lambda: cache.delete_many(keys), robust=True)


@receiver(connection_ended)
def _sessions_ended(sender, connection_ids, **kwargs):
    # Sent once the session's end is committed (brokers.services.tokens).
    flush_read_accounts_of_connections(connection_ids)


@receiver(post_save, sender=Order)
@receiver(post_delete, sender=Order)
def _order_changed(sender, instance, **kwargs):
    account_id = instance.account_id
    transaction.on_commit(lambda: flush_order_pages(account_id), robust=True)
