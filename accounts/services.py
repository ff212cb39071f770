"""Account writes: creation, the primary (mode) switch, sync and paper reset.

Order writes live in `accounts.orders`, the paper engine in `accounts.paper`.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from rest_framework import status

from accounts import caches, live, placement
from accounts.account_locks import account_lock
from accounts.audit import account_event_record
from accounts.broker_updates import orders_reconcile
from accounts.models import Order, TradingAccount
from accounts.paper import paper_orders_match
from accounts.paper_buying_power import RESTING_STATUSES
from accounts.paper_fills import status_set
from brokers.adapters.types import BrokerAccountRef
from brokers.models import BrokerConnection, BrokerKind
from thor.errors import ApplicationError

logger = logging.getLogger("accounts.services")

# How a live account of each broker is named, and the currency it is kept in.
LIVE_ACCOUNTS = {BrokerKind.KITE: ("Zerodha", "INR"), BrokerKind.SCHWAB: ("Schwab", "USD")}


@transaction.atomic
def trading_account_create_paper(*, user, currency: str | None = None) -> TradingAccount:
    """A paper account in one of the tenant's paper currencies, funded with that currency's starting cash.

    Without a currency: the tenant's own, as the user's primary account (sign-up). One per currency.
    """
    offered = user.tenant.paper_currencies()
    currency = currency or user.tenant.currency
    if currency not in offered:
        raise ApplicationError(
            f"This tenant offers paper accounts in {', '.join(sorted(offered))}, not {currency}.",
            code="currency_not_offered",
            errors={"currency": [f"Use one of {', '.join(sorted(offered))}."]},
        )
    if TradingAccount.objects.filter(user=user, mode=TradingAccount.Mode.PAPER, currency=currency).exists():
        raise ApplicationError(
            f"You already have a {currency} paper account.",
            code="paper_account_exists",
            status_code=status.HTTP_409_CONFLICT,
        )
    first = not TradingAccount.objects.filter(user=user).exists()
    return TradingAccount.objects.create(
        user=user,
        mode=TradingAccount.Mode.PAPER,
        display_name=f"Paper {currency}",
        currency=currency,
        cash=offered[currency],
        is_primary=first,
    )


@transaction.atomic
def trading_account_for_connection(
    *, connection: BrokerConnection, broker_accounts: Iterable[BrokerAccountRef] = ()
) -> list[TradingAccount]:
    """The live accounts of a newly linked (or relinked) broker connection: one per broker account.

    A relink keeps each account's row (and so its orders); an account the broker no longer lists
    keeps its row too, its reads then fail at the broker like any other.
    """
    name, currency = LIVE_ACCOUNTS[connection.app.kind]
    refs = list(broker_accounts) or [BrokerAccountRef(broker_account_id=connection.broker_user_id, account_number="")]
    accounts = []
    for ref in refs:
        label = ref.display_name or (f"{name} ••••{ref.account_number[-4:]}" if ref.account_number else "")
        account, _ = TradingAccount.objects.update_or_create(
            connection=connection,
            broker_account_id=ref.broker_account_id,
            defaults={"user": connection.user, "mode": TradingAccount.Mode.LIVE, "account_number": ref.account_number},
            create_defaults={
                "user": connection.user,
                "mode": TradingAccount.Mode.LIVE,
                "account_number": ref.account_number,
                "display_name": label or f"{name} {ref.broker_account_id}",
                "currency": currency,
                "is_primary": False,
            },
        )
        accounts.append(account)
    return accounts


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
    demoted = TradingAccount.objects.filter(user=account.user, is_primary=True).exclude(pk=account.pk)
    demoted_ids = list(demoted.values_list("pk", flat=True))
    demoted.update(is_primary=False)
    # A bulk update sends no signal: the demoted accounts' cached copies go once it commits, as a save's do.
    for demoted_id in demoted_ids:
        transaction.on_commit(
            lambda pk=demoted_id: caches.flush_read_accounts(user_id=account.user_id, account_id=pk), robust=True
        )
    account.is_primary = True
    account.save(update_fields=["is_primary", "updated_at"])
    return account


@transaction.atomic
def trading_account_reset(*, account: TradingAccount, actor) -> TradingAccount:
    """A paper account's starting cash again, every resting order cancelled and every position closed; audited."""
    if account.mode != TradingAccount.Mode.PAPER:
        raise ApplicationError(
            "Only paper accounts can be reset.", code="not_paper", status_code=status.HTTP_409_CONFLICT
        )
    account = account_lock(account_id=account.pk, live=False)
    positions = list(account.paper_positions.all())
    before = {
        "cash": str(account.cash),
        "positions": [
            {"exchange": p.exchange, "symbol": p.symbol, "product": p.product, "quantity": str(p.quantity)}
            for p in positions
        ],
    }
    # A sliced order's parent follows its children as they are cancelled.
    for order in account.orders.filter(status__in=(*RESTING_STATUSES, Order.Status.PENDING), children__isnull=True):
        status_set(order=order, status=Order.Status.CANCELLED, message="Account reset.", kind="cancelled", actor=actor)
    account.paper_positions.all().delete()
    account.cash = account.user.tenant.paper_starting_cash
    account.save(update_fields=["cash", "updated_at"])
    account_event_record(
        account=account, kind="account_reset", before=before, after={"cash": str(account.cash)}, actor=actor
    )
    return account


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
    changed["orders"] = orders_reconcile(account=account, results=broker_orders)
    return SyncResult(changed=changed, as_of=timezone.now())


def unknown_orders_settle(*, now=None, limit: int = 200) -> int:
    """Settle the placements without a broker id that are due: first PENDING orders no process is sending
    any more (a crash mid-send), then UNKNOWN and NEEDS_REVIEW ones whose next look is due; returns how
    many left UNKNOWN.

    State lives on the order (`send_started_at`, `settle_after`, `settle_checks`), so a crash or a restart
    loses nothing: the next run picks the same orders up.
    """
    now = now or timezone.now()
    placement.orphaned_placements_settle(now=now)
    due = (
        Order.objects.filter(status__in=(Order.Status.UNKNOWN, Order.Status.NEEDS_REVIEW), settle_after__lte=now)
        .select_related("account__connection__app", "account__user__tenant")
        .order_by("settle_after")[:limit]
    )
    settled = 0
    for order in due:
        try:
            settled += placement.live_order_settle(order=order, now=now).status != Order.Status.UNKNOWN
        except Exception:
            # One order's trouble (its session ended, say) must not stop the others being settled.
            logger.exception("Could not settle order %s", order.pk)
    return settled
