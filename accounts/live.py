"""Live accounts: reads through the snapshot cache, order calls through the broker guard.

No function here holds a database transaction across a broker call.
"""

import logging
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import transaction

from accounts.audit import order_event_record, order_state
from accounts.models import Order, TradingAccount
from brokers.adapters.base import BrokerAdapter
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import OrderRequest, OrderResult
from brokers.models import BrokerConnection
from brokers.services import broker_call, connection_require_active
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
    return broker_call(_connection(account), call)


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


def live_snapshot_peek(*, account: TradingAccount, what: str):
    """The last-good data, without calling the broker (None when there is none)."""
    stale = snapshots.peek(snapshots.key(account.user.tenant.slug, account.pk, what))
    return stale.data if stale else None


def live_snapshots_forget(*, account: TradingAccount) -> None:
    """An order changed the account: the next read goes to the broker."""
    for what in ("positions", "holdings", "funds", "orders"):
        snapshots.forget(snapshots.key(account.user.tenant.slug, account.pk, what))


def _apply_result(order: Order, result: OrderResult) -> None:
    order.broker_order_id = result.broker_order_id or order.broker_order_id
    if result.status in Order.Status.values:
        order.status = result.status
    elif result.status:
        # Kite's working states (OPEN PENDING, VALIDATION PENDING, MODIFIED...) all mean open.
        order.status = Order.Status.OPEN
    order.filled_quantity = result.filled_quantity or order.filled_quantity
    order.average_price = result.average_price or order.average_price
    order.status_message = (result.status_message or "")[:500]
    if result.raw:
        order.raw = result.raw


def _save_with_event(*, order: Order, kind: str, before: dict, actor, broker_response: dict | None = None) -> Order:
    order.save()
    order_event_record(order=order, kind=kind, before=before, actor=actor, broker_response=broker_response)
    return order


class OrderBookUnreadable(Exception):
    """The broker's order book could not be read: whether an order reached it is unknown."""


def _find_by_tag(*, account: TradingAccount, tag: str) -> OrderResult | None:
    """The broker's order with this tag, or None when the order book was read and has none.

    Looks a few times: a request that timed out on our side may still be on its way in. Only a
    last look that succeeded can say "not there"; otherwise raises OrderBookUnreadable.
    """
    readable = False
    for attempt in range(settings.THOR_PLACEMENT_LOOKUPS):
        if attempt:
            time.sleep(settings.THOR_PLACEMENT_LOOKUP_INTERVAL)
        try:
            book = live_call(account, lambda adapter: adapter.orders())
        except BrokerError as error:
            logger.warning("Order book unreadable while confirming tag %s: %s", tag, error.code)
            readable = False
            continue
        readable = True
        found = next((result for result in book if result.tag == tag), None)
        if found is not None:
            return found
    if not readable:
        raise OrderBookUnreadable(tag)
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
    """Send a stored PENDING order. Raises the BrokerError when the broker refused it."""
    account = order.account
    request = order_request_of(order)
    before = order_state(order)
    try:
        result = live_call(account, lambda adapter: adapter.place(request))
    except BrokerError as error:
        if error.code in UNCERTAIN_ERRORS:
            return _resolve_uncertain_placement(order=order, error=error, actor=actor)
        order.status = Order.Status.REJECTED
        order.status_message = (error.broker_message or error.message)[:500]
        _save_with_event(order=order, kind="rejected", before=before, actor=actor, broker_response={"code": error.code})
        raise
    if result.status == "PENDING":
        result = OrderResult(**{**result.__dict__, "status": Order.Status.OPEN})
    live_snapshots_forget(account=account)
    return _record_placement(order=order, result=result, actor=actor, kind="sent")


@transaction.atomic
def _record_placement(*, order: Order, result: OrderResult, actor, kind: str) -> Order:
    """The broker took the order: store its id without undoing what a postback already stored.

    Kite may post the fill back before it answers the placement. The postback finds the order by
    its tag, so the row is re-read under lock and left as the postback made it.
    """
    current = Order.objects.select_for_update().get(pk=order.pk)
    if current.broker_order_id:
        return current
    before = order_state(current)
    _apply_result(current, result)
    _fold_postback_stand_in(order=current)
    return _save_with_event(order=current, kind=kind, before=before, actor=actor, broker_response=result.raw)


def _fold_postback_stand_in(*, order: Order) -> None:
    """A postback that came without our tag made a stand-in row for the same broker order.

    Its state is newer than the placement answer, so the order takes it; its audit moves over.
    """
    stand_in = (
        Order.objects.select_for_update()
        .filter(account=order.account, broker_order_id=order.broker_order_id)
        .exclude(pk=order.pk)
        .first()
    )
    if stand_in is None:
        return
    for field in ("status", "status_message", "filled_quantity", "average_price", "raw"):
        setattr(order, field, getattr(stand_in, field))
    stand_in.events.update(order=order)
    stand_in.delete()


def _resolve_uncertain_placement(*, order: Order, error: BrokerError, actor) -> Order:
    """The broker may have taken the order: look for its tag in the order book instead of resending."""
    before = order_state(order)
    try:
        found = _find_by_tag(account=order.account, tag=order.client_order_id)
    except OrderBookUnreadable:
        order.status_message = "Placement unconfirmed: the broker did not answer; the next sync resolves it."
        _save_with_event(order=order, kind="placement_unknown", before=before, actor=actor)
        raise error from None
    if found is None:
        order.status = Order.Status.REJECTED
        order.status_message = f"Not placed: the broker failed ({error.code}) and has no order with this tag."
        _save_with_event(order=order, kind="placement_not_found", before=before, actor=actor)
        raise error
    live_snapshots_forget(account=order.account)
    return _record_placement(order=order, result=found, actor=actor, kind="placement_confirmed")


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


@transaction.atomic
def live_orders_reconcile(*, account: TradingAccount, results: Iterable[OrderResult]) -> int:
    """Bring Thor's orders in line with the broker's order book; returns how many rows changed."""
    changed = 0
    for result in results:
        order = (
            account.orders.select_for_update().filter(broker_order_id=result.broker_order_id).first()
            or account.orders.select_for_update().filter(client_order_id=result.tag, broker_order_id="").first()
        )
        if order is None:
            order = Order(
                account=account,
                client_order_id=f"{account.broker}-{result.broker_order_id}"[:40],
                symbol=result.symbol,
                exchange=result.exchange,
                side=result.side,
                quantity=result.quantity,
                order_type=result.order_type,
                product=result.product,
                price=result.price,
                trigger_price=result.trigger_price,
                validity=result.validity or "DAY",
            )
        before = order_state(order) if order.pk else {}
        _apply_result(order, result)
        if order_state(order) != before:
            _save_with_event(order=order, kind="synced", before=before, actor=None, broker_response=result.raw)
            changed += 1
    return changed
