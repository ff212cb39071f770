"""Reads, always scoped by the user: accounts, orders, and positions, holdings and funds for any broker."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts import caches, live
from accounts.models import Order, TradingAccount
from accounts.paper_buying_power import paper_commitments
from accounts.paper_funds import paper_charges_today, paper_funds_at, paper_position_at, paper_valuation
from brokers.adapters.types import Holding
from thor.money import CENT, ROUNDING
from thor.snapshots import LiveRead, Present, presented

PRIMARY = "primary"
# ASCII digits only: str.isdigit() also accepts "²" and "٣", which int() refuses. 18 digits fit a bigint.
ACCOUNT_ID = re.compile(r"[0-9]{1,18}")


def primary_account_get(*, user) -> TradingAccount | None:
    return TradingAccount.objects.filter(user=user, is_primary=True).select_related("connection__app").first()


def account_list(*, user) -> QuerySet[TradingAccount]:
    return TradingAccount.objects.filter(user=user).select_related("connection__app", "user__tenant").order_by("id")


def account_get(*, user, account_ref: str) -> TradingAccount:
    """The user's account by Thor id or the alias `primary`; anyone else's is a 404."""
    return _account_by_ref(account_list(user=user), account_ref)


def account_for_read_get(*, user, account_ref: str) -> TradingAccount:
    """account_get for the live reads: the same account (or 404), with only what a read from the cache uses.

    Its columns, its session's state, its app's kind and its tenant's slug (the snapshot's key): not the app's keys, the
    encrypted tokens nor the user's and tenant's other columns, which only a call to the broker needs
    (loaded then, on first use, as Django loads deferred fields). A live account is kept for a few seconds,
    keyed by the user (accounts.caches): anyone else's is still a 404.
    """
    seconds = settings.THOR_READ_CACHE_SECONDS
    cacheable = seconds and _cacheable_ref(account_ref)
    if cacheable and (account := cache.get(caches.read_account_key(user.pk, account_ref))) is not None:
        return account
    accounts = (
        TradingAccount.objects.filter(user=user)
        .select_related("connection__app", "user__tenant")
        .only(
            *(field.name for field in TradingAccount._meta.concrete_fields),
            "connection__id",
            "connection__user_id",
            "connection__app_id",
            "connection__status",
            "connection__access_expires_at",
            "user__id",
            "user__tenant_id",
            "user__tenant__id",
            "user__tenant__slug",
            # What a placement reads before its account lock: whether the broker slices (the app's kind), the
            # tenant's algo ids and order value limit (accounts.orders.place).
            "connection__app__id",
            "connection__app__kind",
            "user__tenant__algo_ids",
            "user__tenant__max_order_value",
        )
    )
    account = _account_by_ref(accounts, account_ref)
    if cacheable and account.mode == TradingAccount.Mode.LIVE:
        cache.set(caches.read_account_key(user.pk, account_ref), account, seconds)
    return account


def account_for_order_get(*, user, account_ref: str) -> TradingAccount:
    """account_get for a placement: the account as the reads take it (account_for_read_get: a live one kept
    for a few seconds, so a trader's next placements cost no SQL to find it), loading what else it needs
    (its broker app and tokens, for a band quote) on first use.

    The placement reads the row again under its lock (accounts.account_locks.account_lock) and checks that one, so
    it takes from here what cannot change under it (that the user owns the account: the cache is keyed by
    the user; its mode; its connection) and whether to read prices before the lock (its tenant's order value
    limit: a limit set within the cache's seconds fails closed, a market order refused for want of a price).
    """
    return account_for_read_get(user=user, account_ref=account_ref)


def _cacheable_ref(account_ref: str) -> bool:
    # Only a well-formed reference reaches the cache; anything else is a 404 from the database.
    return account_ref == PRIMARY or bool(ACCOUNT_ID.fullmatch(account_ref))


def _account_by_ref(accounts: QuerySet[TradingAccount], account_ref: str) -> TradingAccount:
    if account_ref == PRIMARY:
        account = accounts.filter(is_primary=True).first()
    elif ACCOUNT_ID.fullmatch(account_ref):
        account = accounts.filter(pk=int(account_ref)).first()
    else:
        account = None
    if account is None:
        raise Http404
    return account


def account_status(account: TradingAccount) -> str:
    if account.mode == TradingAccount.Mode.PAPER:
        return "active"
    return account.connection.status if account.connection else "revoked"


def order_list(
    *,
    account: TradingAccount,
    status: str | None = None,
    symbol: str | None = None,
    side: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> QuerySet[Order]:
    # A sliced order is listed once, as its parent; its slices come with it (`children`), one query a page.
    orders = account.orders.filter(parent__isnull=True).prefetch_related(_children_prefetch())
    if status:
        orders = orders.filter(status=status)
    if symbol:
        orders = orders.filter(symbol=symbol)
    if side:
        orders = orders.filter(side=side)
    if created_from:
        orders = orders.filter(created_at__gte=created_from)
    if created_to:
        orders = orders.filter(created_at__lt=created_to)
    return orders


def _children_prefetch() -> Prefetch:
    return Prefetch("children", queryset=Order.objects.order_by("id"), to_attr="child_orders")


def order_get(*, account: TradingAccount, order_id: int) -> Order:
    order = account.orders.filter(pk=order_id).prefetch_related(_children_prefetch()).first()
    if order is None:
        raise Http404
    return order


def _now_read(data, source: str = "live", as_of: datetime | None = None) -> LiveRead:
    # Paper numbers come straight from the database; only their market prices can be old (see paper_valuation).
    return LiveRead(data=data, source=source, as_of=as_of or timezone.now())


@dataclass(frozen=True)
class PresentedRead:
    source: str
    as_of: datetime
    data: object


def presented_read_get(
    *, account: TradingAccount, what: str, read: Callable[..., LiveRead], present: Present, fresh: bool = False
) -> PresentedRead:
    """`read` (positions_get, funds_get ...) as `present` presents its data. A live account's fresh snapshot
    answers with the presentation kept beside it, its data not unpickled; anything else (fresh=True, no
    fresh snapshot, a paper account) goes through `read`."""
    if not fresh and account.mode == TradingAccount.Mode.LIVE:
        kept = live.live_fresh_body(account=account, what=what, present=present)
        if kept is not None:
            return PresentedRead(source="cache", as_of=kept.as_of, data=kept.body)
    result = read(account=account, fresh=fresh, present=present)
    return PresentedRead(source=result.source, as_of=result.as_of, data=presented(result, present))


def positions_get(*, account: TradingAccount, fresh: bool = False, present: Present | None = None) -> LiveRead:
    if account.mode == TradingAccount.Mode.LIVE:
        return live.live_read(
            account=account, what="positions", call=lambda adapter: adapter.positions(), force=fresh, present=present
        )
    valuation = paper_valuation(account)
    return _now_read(
        [paper_position_at(position, price) for position, price in valuation.positions],
        valuation.source,
        valuation.as_of,
    )


def holdings_get(*, account: TradingAccount, fresh: bool = False, present: Present | None = None) -> LiveRead:
    """Paper holdings are the CNC longs."""
    if account.mode == TradingAccount.Mode.LIVE:
        return live.live_read(
            account=account, what="holdings", call=lambda adapter: adapter.holdings(), force=fresh, present=present
        )
    valuation = paper_valuation(account)
    holdings = [
        Holding(
            symbol=position.symbol,
            exchange=position.exchange,
            quantity=position.quantity,
            average_price=position.average_price,
            last_price=price,
            pnl=((price - position.average_price) * position.quantity).quantize(CENT, rounding=ROUNDING),
            day_change=Decimal("0"),
            value=(position.quantity * price).quantize(CENT, rounding=ROUNDING),
        )
        for position, price in valuation.positions
        if position.product == "CNC" and position.quantity > 0
    ]
    return _now_read(holdings, valuation.source, valuation.as_of)


def funds_get(*, account: TradingAccount, fresh: bool = False, present: Present | None = None) -> LiveRead:
    if account.mode == TradingAccount.Mode.LIVE:
        return live.live_read(
            account=account, what="funds", call=lambda adapter: adapter.funds(), force=fresh, present=present
        )
    # Resting orders are reserved at their instruments' marks as the pre-trade check reserves them (a short sale's
    # margin at the mark): valued at the positions' marks alone, funds would show room the check does not give.
    valuation = paper_valuation(account, resting_orders=True)
    marks = valuation.marks
    # Short proceeds are in cash but owed back: they and the shorts' margin are tied up, like reservations.
    utilised = paper_commitments(account=account).utilised(marks)
    return _now_read(
        paper_funds_at(
            account=account,
            utilised=utilised,
            valued=valuation.positions,
            charges_today=paper_charges_today(account=account),
        ),
        valuation.source,
        valuation.as_of,
    )
