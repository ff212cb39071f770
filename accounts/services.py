"""Account writes: creation, the primary (mode) switch, sync and paper reset.

Order writes live in `accounts.orders`, the paper engine in `accounts.paper`.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from rest_framework import status

from accounts import live
from accounts.models import TradingAccount
from accounts.paper import paper_account_reset, paper_orders_match
from brokers.models import BrokerConnection
from thor.errors import ApplicationError


@transaction.atomic
def trading_account_create_paper(*, user, primary: bool = True) -> TradingAccount:
    """The user's paper account, funded with the tenant's starting cash."""
    tenant = user.tenant
    return TradingAccount.objects.create(
        user=user,
        mode=TradingAccount.Mode.PAPER,
        display_name="Paper",
        currency=tenant.currency,
        cash=tenant.paper_starting_cash,
        is_primary=primary,
    )


@transaction.atomic
def trading_account_set_primary(*, account: TradingAccount) -> TradingAccount:
    """Seed 002's mode switch: the primary account is the paper one or any active live account."""
    if account.mode == TradingAccount.Mode.LIVE and (
        account.connection is None or account.connection.status != BrokerConnection.Status.ACTIVE
    ):
        raise ApplicationError(
            "This live account's broker session has ended: link it again first.",
            code="reauth_required",
            status_code=status.HTTP_409_CONFLICT,
        )
    TradingAccount.objects.filter(user=account.user, is_primary=True).exclude(pk=account.pk).update(is_primary=False)
    account.is_primary = True
    account.save(update_fields=["is_primary", "updated_at"])
    return account


def trading_account_reset(*, account: TradingAccount, actor) -> TradingAccount:
    if account.mode != TradingAccount.Mode.PAPER:
        raise ApplicationError(
            "Only paper accounts can be reset.", code="not_paper", status_code=status.HTTP_409_CONFLICT
        )
    return paper_account_reset(account=account, actor=actor)


@dataclass(frozen=True)
class SyncResult:
    changed: dict[str, int]
    as_of: datetime


def trading_account_sync(*, account: TradingAccount) -> SyncResult:
    """Refresh everything from the broker (or match resting paper orders) and say what changed."""
    if account.mode == TradingAccount.Mode.PAPER:
        return SyncResult(changed={"orders": paper_orders_match(account_id=account.pk)}, as_of=timezone.now())
    changed = {}
    for what in ("positions", "holdings", "funds"):
        previous = live.live_snapshot_peek(account=account, what=what)
        read = live.live_read(
            account=account, what=what, call=lambda adapter, what=what: getattr(adapter, what)(), force=True
        )
        changed[what] = int(previous != read.data)
    broker_orders = live.live_call(account, lambda adapter: adapter.orders())
    changed["orders"] = live.live_orders_reconcile(account=account, results=broker_orders)
    return SyncResult(changed=changed, as_of=timezone.now())
