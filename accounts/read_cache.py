"""The live reads' account, kept for a few seconds: a read answered from the snapshot cache runs no SQL.

`account_for_read_get` keeps the live account it resolved (with its connection's state and its tenant's
slug) under `thor:read-account:{user_id}:{ref}` for THOR_READ_CACHE_SECONDS (at most 5). Only live
accounts: a paper read computes from its rows (and its cash) every time, so caching its account saves
nothing and could show cash from before a fill. Saving or deleting the account or its connection, and a
session ending (brokers.signals.connection_ended: expired, revoked), drop the cached copies at once;
any other bulk update of them is seen within the TTL.

Each process also remembers which account a reference last named for a user (`resolved_ref`), so the
read can ask for that account's fresh snapshot in the same round trip as the user and the account. It is
a guess and only that: the snapshot is used only if it is the snapshot of the account the read resolves.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver

from accounts.models import TradingAccount
from brokers.models import BrokerConnection
from brokers.signals import connection_ended

PRIMARY = "primary"


def account_key(user_id, account_ref: str) -> str:
    return f"thor:read-account:{user_id}:{account_ref}"


@dataclass(frozen=True)
class ResolvedRef:
    account_id: int
    tenant_slug: str


# About one per signed-in user a worker serves.
RESOLVED_REFS_KEPT = 4096
_resolved: OrderedDict[tuple, ResolvedRef] = OrderedDict()
_resolved_lock = threading.Lock()


def resolved_ref_remember(*, user_id, account_ref: str, account: TradingAccount) -> None:
    with _resolved_lock:
        # The token's user id is text, the user's pk a number.
        _resolved[(str(user_id), account_ref)] = ResolvedRef(account.pk, account.user.tenant.slug)
        _resolved.move_to_end((str(user_id), account_ref))
        while len(_resolved) > RESOLVED_REFS_KEPT:
            _resolved.popitem(last=False)


def resolved_ref(*, user_id, account_ref: str) -> ResolvedRef | None:
    return _resolved.get((str(user_id), account_ref))


def read_accounts_forget(*, user_id, account_id) -> None:
    """Both names a cached account may have: its id and, for whichever is primary now or was, `primary`."""
    cache.delete_many([account_key(user_id, PRIMARY), account_key(user_id, str(account_id))])


@receiver(post_save, sender=TradingAccount)
@receiver(post_delete, sender=TradingAccount)
def _forget_changed_account(sender, instance, **kwargs):
    read_accounts_forget(user_id=instance.user_id, account_id=instance.pk)


def _forget_accounts_of(connection_ids) -> None:
    accounts = TradingAccount.objects.filter(connection_id__in=connection_ids).values_list("pk", "user_id")
    for account_id, user_id in accounts:
        read_accounts_forget(user_id=user_id, account_id=account_id)


@receiver(post_save, sender=BrokerConnection)
@receiver(pre_delete, sender=BrokerConnection)
def _forget_accounts_of_changed_connection(sender, instance, **kwargs):
    # Before a delete: afterwards the accounts no longer point at it (SET_NULL).
    _forget_accounts_of([instance.pk])


@receiver(connection_ended)
def _forget_accounts_of_ended_sessions(sender, connection_ids, **kwargs):
    _forget_accounts_of(connection_ids)
