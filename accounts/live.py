"""Live accounts: reads through the snapshot cache, order calls through the broker guard.

No function here holds a database transaction across a broker call.
"""

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import order_event_record, order_state
from accounts.broker_updates import order_broker_update
from accounts.models import Order, TradingAccount
from brokers.adapters.base import BrokerAdapter
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import OrderRequest, OrderResult
from brokers.models import BrokerConnection
from brokers.services import broker_call, connection_require_active, connection_usable_as_is
from thor import snapshots

logger = logging.getLogger("accounts.live")

# A placement that ended in one of these may or may not have reached the broker.
UNCERTAIN_ERRORS = (BrokerErrorCode.TIMEOUT, BrokerErrorCode.UNAVAILABLE)


def _connection(account: TradingAccount) -> BrokerConnection:
    if account.connection is None:
        raise BrokerError(
            "This account is no longer linked; link it again.", code=BrokerErrorCode.TOKEN_EXPIRED, permanent=True
        )
    return account.connection


def live_call(account: TradingAccount, call: Callable[[BrokerAdapter], object]):
    """`call(adapter)` acting for this account (Schwab: its hashValue; one Kite login is one account)."""
    return broker_call(_connection(account), call, account_id=account.broker_account_id)


def live_read(
    *,
    account: TradingAccount,
    what: str,
    call: Callable[[BrokerAdapter], object],
    force: bool = False,
    present: snapshots.Present | None = None,
):
    """Fresh cache -> one upstream call (single flight, rate budget) -> last-good snapshot.

    An ended session answers reauth before any cache: numbers from a session that is gone are not shown.
    `present` is kept with each new snapshot (see thor.snapshots).
    """
    connection_require_active(_connection(account))
    return snapshots.read_through(
        snapshots.key(account.user.tenant.slug, account.pk, what),
        lambda: live_call(account, call),
        fresh_ttl=settings.THOR_LIVE_FRESH_SECONDS,
        stale_ttl=settings.THOR_LIVE_STALE_SECONDS,
        force=force,
        present=present,
    )


def live_fresh_body_key(*, account_id: int, tenant_slug: str, what: str) -> str:
    return snapshots.fresh_body_key(snapshots.key(tenant_slug, account_id, what))


def live_fresh_body(
    *, account: TradingAccount, what: str, present: snapshots.Present, prefetched: dict | None = None
) -> snapshots.FreshBody | None:
    """The fresh snapshot as `present` renders it, without the data behind it; None when there is none
    (then live_read). `prefetched`: cache entries the caller already fetched, a miss included.

    As live_read: an ended session answers reauth before any cache.
    """
    connection_require_active(_connection(account))
    return _fresh_body(account=account, what=what, present=present, prefetched=prefetched)


def live_fresh_body_as_is(
    *, account: TradingAccount, what: str, present: snapshots.Present, prefetched: dict | None = None
) -> snapshots.FreshBody | None:
    """live_fresh_body when its session needs nothing (no refresh, no expiry, no reauth): for a read answered
    from the caches alone, which leaves every other case to live_fresh_body. Never raises, never writes."""
    if account.connection is None or not connection_usable_as_is(account.connection):
        return None
    return _fresh_body(account=account, what=what, present=present, prefetched=prefetched)


def _fresh_body(*, account, what, present, prefetched) -> snapshots.FreshBody | None:
    base = snapshots.key(account.user.tenant.slug, account.pk, what)
    key = snapshots.fresh_body_key(base)
    if prefetched is not None and key in prefetched:
        entry = prefetched[key]
        return None if entry is None else snapshots.fresh_body(base, present, cached=entry)
    return snapshots.fresh_body(base, present)


def live_snapshot_peek(*, account: TradingAccount, what: str):
    """The last-good data, without calling the broker (None when there is none)."""
    stale = snapshots.peek(snapshots.key(account.user.tenant.slug, account.pk, what))
    return stale.data if stale else None


def live_snapshots_forget(*, account: TradingAccount) -> None:
    """An order changed the account: the next read goes to the broker."""
    changed = ("positions", "holdings", "funds", "orders")
    snapshots.forget(*(snapshots.key(account.user.tenant.slug, account.pk, what) for what in changed))


def _save_with_event(*, order: Order, kind: str, before: dict, actor, broker_response: dict | None = None) -> Order:
    order.save()
    order_event_record(order=order, kind=kind, before=before, actor=actor, broker_response=broker_response)
    return order


class OrderBookUnreadable(Exception):
    """The broker's order book could not be read: whether an order reached it is unknown."""


def _find_placed(*, order: Order, request: OrderRequest, sent_at, attempts: int) -> OrderResult | None:
    """The broker's copy of this order (by tag where the broker keeps one, else by matching its recent
    orders: see BrokerAdapter.find_placed), or None when the order book was read and has none.

    A match Thor already holds for another order is not this one. Only a last look that succeeded
    can say "not there"; otherwise raises OrderBookUnreadable.
    """
    account = order.account
    readable = False
    for attempt in range(attempts):
        if attempt:
            time.sleep(settings.THOR_PLACEMENT_LOOKUP_INTERVAL)
        try:
            found = live_call(account, lambda adapter: adapter.find_placed(request, sent_at))
        except BrokerError as error:
            logger.warning("Order book unreadable while confirming order %s: %s", order.client_order_id, error.code)
            readable = False
            continue
        readable = True
        if found is not None and not (
            Order.objects.filter(account=account, broker_order_id=found.broker_order_id).exclude(pk=order.pk).exists()
        ):
            return found
    if not readable:
        raise OrderBookUnreadable(order.client_order_id)
    return None


def order_request_of(order: Order) -> OrderRequest:
    """The stored order as the broker sees it, tagged with Thor's id so a timed-out placement can be found."""
    return OrderRequest(
        symbol=order.symbol,
        exchange=order.exchange,
        side=order.side,
        quantity=order.quantity,
        order_type=order.order_type,
        product=order.product,
        price=order.price,
        trigger_price=order.trigger_price,
        validity=order.validity,
        tag=order.client_order_id,
    )


def live_order_send(*, order: Order, actor) -> Order:
    """Send a stored PENDING order. Raises the BrokerError when the broker refused it for certain.

    When the answer is lost (a timeout, a 5xx) the order may be at the broker: it is looked up by its tag,
    and if it is not found yet it becomes UNKNOWN, for `live_order_settle` to resolve; it is never sent again.
    """
    account = order.account
    request = order_request_of(order)
    before = order_state(order)
    try:
        result = live_call(account, lambda adapter: adapter.place(request))
    except BrokerError as error:
        if error.code in UNCERTAIN_ERRORS:
            return _placement_uncertain(order=order, error=error, actor=actor)
        order.status = Order.Status.REJECTED
        order.status_message = (error.broker_message or error.message)[:500]
        _save_with_event(order=order, kind="rejected", before=before, actor=actor, broker_response={"code": error.code})
        raise
    live_snapshots_forget(account=account)
    return order_broker_update(account=account, result=result, kind="sent", order=order, actor=actor)[0]


def _settle_delay(checks: int) -> timedelta:
    # 1, 2, 4 ... seconds, at most a minute between looks.
    return timedelta(seconds=min(2**checks, 60))


def _placement_uncertain(*, order: Order, error: BrokerError, actor) -> Order:
    try:
        found = _find_placed(
            order=order,
            request=order_request_of(order),
            sent_at=order.created_at,
            attempts=settings.THOR_PLACEMENT_LOOKUPS,
        )
    except OrderBookUnreadable:
        found = None
    if found is not None:
        live_snapshots_forget(account=order.account)
        return order_broker_update(
            account=order.account, result=found, kind="placement_confirmed", order=order, actor=actor
        )[0]
    before = order_state(order)
    order.status = Order.Status.UNKNOWN
    order.status_message = (
        f"Placement unconfirmed: the broker did not answer ({error.code}); Thor is checking its order book."
    )
    order.settle_checks = 0
    order.settle_after = timezone.now() + _settle_delay(0)
    return _save_with_event(order=order, kind="placement_unknown", before=before, actor=actor)


def placement_settle_window(order: Order) -> timedelta:
    """How long after it was sent an order the broker's book does not show may still appear in it."""
    return timedelta(seconds=settings.THOR_PLACEMENT_SETTLE_SECONDS[order.account.broker])


def live_order_settle(*, order: Order, now=None) -> Order:
    """Resolve an UNKNOWN order from the broker's order book: confirmed when the book shows its tag,
    REJECTED only once the settle window has passed without a trace; else looked at again later."""
    now = now or timezone.now()
    if order.status != Order.Status.UNKNOWN:
        return order
    try:
        found = _find_placed(order=order, request=order_request_of(order), sent_at=order.created_at, attempts=1)
    except (OrderBookUnreadable, BrokerError):
        found, readable = None, False
    else:
        readable = True
    if found is not None:
        live_snapshots_forget(account=order.account)
        return order_broker_update(account=order.account, result=found, kind="placement_confirmed", order=order)[0]
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",)).select_related("account__connection__app").get(pk=order.pk)
        )
        if order.status != Order.Status.UNKNOWN:
            return order  # a postback settled it meanwhile
        before = order_state(order)
        order.settle_checks += 1
        if readable and now >= order.created_at + placement_settle_window(order):
            order.status = Order.Status.REJECTED
            order.settle_after = None
            order.status_message = "Not placed: the broker's order book never showed it."
            return _save_with_event(order=order, kind="placement_not_found", before=before, actor=None)
        order.settle_after = now + _settle_delay(order.settle_checks)
        order.save(update_fields=["settle_checks", "settle_after", "updated_at"])
        return order


def live_order_modify(*, order: Order, request: OrderRequest, actor) -> Order:
    changes = {
        field: getattr(request, field)
        for field in ("quantity", "price", "trigger_price", "order_type", "validity")
        if getattr(request, field) != getattr(order, field)
    }
    before = order_state(order)
    result = live_call(order.account, lambda adapter: adapter.modify(order.broker_order_id, changes))
    for field, value in changes.items():
        setattr(order, field, value)
    if result.broker_order_id:
        # Schwab's replace makes a new broker order: the Thor order keeps its identity and follows it.
        order.broker_order_id = result.broker_order_id
    live_snapshots_forget(account=order.account)
    return _save_with_event(order=order, kind="modified", before=before, actor=actor, broker_response=result.raw)


def live_order_cancel(*, order: Order, actor) -> Order:
    before = order_state(order)
    result = live_call(order.account, lambda adapter: adapter.cancel(order.broker_order_id))
    order.status = Order.Status.CANCELLED
    live_snapshots_forget(account=order.account)
    return _save_with_event(order=order, kind="cancelled", before=before, actor=actor, broker_response=result.raw)


def live_order_abandon(*, order: Order, message: str, actor) -> Order:
    """A stored order that will never be sent (an earlier batch leg failed)."""
    before = order_state(order)
    order.status = Order.Status.CANCELLED
    order.status_message = message
    return _save_with_event(order=order, kind="not_sent", before=before, actor=actor)
