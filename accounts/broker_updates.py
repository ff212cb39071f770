"""Every order change a broker tells Thor about goes through here: postbacks, syncs and placement answers.

One builder makes an order Thor first hears of from the broker, and one function moves an order to what
the broker says: never backwards (postbacks come twice and out of order, a sync may read an older book),
with the audit row and the WebSocket update of `accounts.audit`.
"""

import logging
from collections.abc import Iterable
from decimal import Decimal

from django.db import transaction

from accounts.audit import order_event_record, order_state
from accounts.models import Order, TradingAccount
from brokers.adapters.types import OrderResult
from brokers.services import VerifiedPostback

logger = logging.getLogger("accounts.broker_updates")

QUANTITY_STEP = Decimal("0.0001")  # the scale of Order's decimal columns


def _on_scale(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(QUANTITY_STEP)


def order_from_broker(*, account: TradingAccount, result: OrderResult) -> Order:
    """An order Thor first hears about from the broker (placed elsewhere, or a tagless postback); unsaved."""
    return Order(
        account=account,
        client_order_id=f"{account.broker}-{result.broker_order_id}"[:40],
        symbol=result.symbol,
        exchange=result.exchange,
        side=result.side,
        quantity=_on_scale(result.quantity),
        order_type=result.order_type,
        product=result.product,
        price=_on_scale(result.price),
        trigger_price=_on_scale(result.trigger_price),
        validity=result.validity or "DAY",
        tag=result.tag[:20],
    )


def _order_locked_for(account: TradingAccount, result: OrderResult) -> Order | None:
    """The order the result is about: by the broker's id, or by Thor's id sent as the tag while the
    placement answer is still on its way (Kite often posts the fill back first)."""
    orders = account.orders.select_for_update()
    order = orders.filter(broker_order_id=result.broker_order_id).first() if result.broker_order_id else None
    if order is None and result.tag:
        order = orders.filter(client_order_id=result.tag, broker_order_id="").first()
    return order


def _moves_backwards(order: Order, result: OrderResult) -> bool:
    """No fill shrinks and a finished order stays finished: Kite signs only a postback's id and timestamp.

    The one exception: an order Thor marked REJECTED without ever hearing from the broker (it found no
    trace of the placement) comes back when the broker shows it after all.
    """
    if order.is_terminal:
        return not (order.status == Order.Status.REJECTED and not order.broker_order_id)
    return result.filled_quantity < order.filled_quantity


def _status_of(result: OrderResult) -> str:
    if result.status in Order.Status.values and result.status not in (Order.Status.PENDING, Order.Status.UNKNOWN):
        return result.status
    # Kite's working states (OPEN PENDING, VALIDATION PENDING, UPDATE, MODIFIED ...) and a bare
    # acknowledgement all mean the order is at the broker and working.
    return Order.Status.OPEN


def _apply(order: Order, result: OrderResult) -> None:
    order.broker_order_id = result.broker_order_id or order.broker_order_id
    order.status = _status_of(result)
    order.filled_quantity = _on_scale(result.filled_quantity) or order.filled_quantity
    order.average_price = _on_scale(result.average_price) or order.average_price
    order.status_message = (result.status_message or "")[:500]
    order.settle_after = None
    if result.raw:
        order.raw = result.raw


def _fold_stand_in(order: Order) -> None:
    """A tagless postback made a stand-in row for this broker order before Thor knew its id: the stand-in's
    state is newer than the placement answer, so the order takes it, and its audit moves over."""
    stand_in = (
        Order.objects.select_for_update()
        .filter(account_id=order.account_id, broker_order_id=order.broker_order_id)
        .exclude(pk=order.pk)
        .first()
    )
    if stand_in is None:
        return
    for field in ("status", "status_message", "filled_quantity", "average_price", "raw"):
        setattr(order, field, getattr(stand_in, field))
    stand_in.events.update(order=order)
    stand_in.delete()


@transaction.atomic
def order_broker_update(
    *, account: TradingAccount, result: OrderResult, kind: str, order: Order | None = None, actor=None
) -> tuple[Order, bool]:
    """Move the order the broker speaks of (found, or built when new) to what it says.

    Returns the order and whether anything changed; nothing is written when the update is a repeat or
    would move the order backwards.
    """
    if order is not None:
        order = Order.objects.select_for_update().get(pk=order.pk)
    else:
        order = _order_locked_for(account, result)
    if order is None:
        order, before = order_from_broker(account=account, result=result), {}
    else:
        before = order_state(order)
        if _moves_backwards(order, result):
            return order, False
    had_broker_id = bool(order.broker_order_id)
    _apply(order, result)
    if order.pk and not had_broker_id:
        _fold_stand_in(order)
    if order.pk and order_state(order) == before:
        return order, False
    order.save()
    order_event_record(order=order, kind=kind, before=before, actor=actor, broker_response=result.raw)
    return order, True


def orders_reconcile(*, account: TradingAccount, results: Iterable[OrderResult]) -> int:
    """Bring Thor's orders in line with the broker's order book; returns how many changed."""
    return sum(order_broker_update(account=account, result=result, kind="synced")[1] for result in results)


@transaction.atomic
def kite_postback_apply(*, postback: VerifiedPostback) -> bool:
    """A verified Kite postback, applied to the order it is about among the accounts it may speak for.

    An order Thor does not hold yet is adopted by the first such account; False when nothing changed
    (a repeat, a late update, or no account Thor holds).
    """
    accounts = list(
        TradingAccount.objects.filter(connection__in=postback.connections, mode=TradingAccount.Mode.LIVE)
        .select_related("connection__app", "user__tenant")
        .order_by("connection_id", "id")
    )
    result = postback.result
    for account in accounts:
        order = _order_locked_for(account, result)
        if order is not None:
            return order_broker_update(account=account, result=result, kind="broker_postback", order=order)[1]
    if not accounts:
        logger.info("Postback for Kite order %s of an account Thor does not hold", result.broker_order_id)
        return False
    return order_broker_update(account=accounts[0], result=result, kind="broker_postback")[1]
