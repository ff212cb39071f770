"""Every order change a broker tells Thor about goes through here: postbacks, syncs and placement answers.

One builder makes an order Thor first hears of from the broker, and one function moves an order to what
the broker says: never backwards (postbacks come twice and out of order, a sync may read an older book),
with the audit row and the WebSocket update of `accounts.audit`.
"""

import contextlib
import copy
import logging
from collections.abc import Iterable
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts import caches
from accounts.audit import order_change_with_event, order_event_record, order_state
from accounts.models import BrokerOrderId, Order, TradingAccount
from accounts.placement_matching import Unclaimed, held_broker_ids, unclaimed_owner
from accounts.slicing import parent_aggregate
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


class Superseded(Exception):
    """The result speaks of a broker id a replace took over: the order follows its new id."""


class SliceUnmatched(Superseded):
    """The result carries a sliced order's tag, and none of its slices is free to be it: no order's update
    (the sliced placement's answer or the book settles it), and never an order of its own."""


def _slice_for_tag(account: TradingAccount, result: OrderResult) -> Order | None:
    """The child of the sliced order (accounts.autoslice) whose tag the result carries: Kite stamps the
    parent's tag on every slice, so a slice it posts back before the placement's answer names no child.
    The first child without a broker order, of the slice's quantity where one is; None when the tag is no
    sliced order's. The parent is read unlocked: a child is locked before its parent, everywhere."""
    parent_id = (
        Order.objects.filter(account=account, client_order_id=result.tag, children__isnull=False)
        .values_list("pk", flat=True)
        .first()
    )
    if parent_id is None:
        return None
    free = Order.objects.select_for_update().filter(
        parent_id=parent_id, broker_order_id="", status__in=Order.UNSETTLED_STATUSES
    )
    child = free.filter(quantity=_on_scale(result.quantity)).order_by("id").first() or free.order_by("id").first()
    if child is None:
        raise SliceUnmatched(result.broker_order_id)
    return child


def _order_locked_for(account: TradingAccount, result: OrderResult) -> Order | None:
    """The order the result is about: by any broker id it has had, or by Thor's id sent as the tag while
    the placement answer is still on its way (Kite often posts the fill back first). Raises Superseded
    for an id a replace made old: its CANCELLED/REPLACED state is not the order's."""
    orders = account.orders.select_for_update()
    if result.broker_order_id:
        order = orders.filter(broker_order_id=result.broker_order_id).first()
        if order is not None:
            return order
        earlier = BrokerOrderId.objects.filter(account=account, broker_order_id=result.broker_order_id).first()
        if earlier is not None:
            raise Superseded(result.broker_order_id)
    if result.tag:
        child = _slice_for_tag(account, result)
        return child if child is not None else orders.filter(client_order_id=result.tag, broker_order_id="").first()
    return None


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


# The columns a broker's word may change (_apply, and a stand-in's state taken over by broker_id_claim): a
# known order's UPDATE writes those of them that changed, and its updated_at, never the rest of the row.
APPLIED_FIELDS = (
    "broker_order_id",
    "status",
    "filled_quantity",
    "average_price",
    "status_message",
    "settle_after",
    "quantity",
    "raw",
)


def applied_values(order: Order) -> dict:
    return {field: getattr(order, field) for field in APPLIED_FIELDS}


def changed_fields(order: Order, values: dict) -> list[str]:
    """The applied columns whose value differs from `values` (applied_values before the change), and updated_at."""
    return [*(field for field, value in values.items() if getattr(order, field) != value), "updated_at"]


def _apply(order: Order, result: OrderResult) -> None:
    order.broker_order_id = result.broker_order_id or order.broker_order_id
    order.status = _status_of(result)
    order.filled_quantity = _on_scale(result.filled_quantity) or order.filled_quantity
    order.average_price = _on_scale(result.average_price) or order.average_price
    order.status_message = (result.status_message or "")[:500]
    order.settle_after = None
    if order.parent_id is not None and not order.quantity and result.quantity:
        order.quantity = _on_scale(result.quantity)  # a slice Kite made beyond Thor's split (accounts.autoslice)
    if result.raw:
        order.raw = result.raw


def broker_id_claim(order: Order, broker_order_id: str) -> bool:
    """Record that the order holds this broker id (unique per account, whatever the code path). An order
    Thor adopted from the broker's own word (a stand-in: a postback or poll seen before the placement's
    answer) gives the id up and is marked MERGED into this one, never deleted; its audit moves over.
    False when a real placement of another order holds it: nothing is assigned."""
    if _broker_id_insert(order, broker_order_id):
        return True
    holder = (
        BrokerOrderId.objects.select_for_update()
        .filter(account_id=order.account_id, broker_order_id=broker_order_id)
        .select_related("order")
        .get()  # the INSERT met it, and these rows are never deleted
    )
    if holder.order_id == order.pk:
        return True
    stand_in = holder.order
    if stand_in.send_started_at is not None:
        logger.error(
            "Broker order %s is held by order %s; not given to order %s", broker_order_id, stand_in.pk, order.pk
        )
        return False
    for field in ("status", "status_message", "filled_quantity", "average_price", "raw"):
        setattr(order, field, getattr(stand_in, field))
    stand_in.events.update(order=order)
    Order.objects.filter(pk=stand_in.pk).update(
        broker_order_id="",
        status=Order.Status.MERGED,
        merged_into=order,
        status_message=f"The same broker order as order {order.pk}.",
    )
    # A bulk update sends no signal: the stand-in's account's kept orders pages go once it commits.
    transaction.on_commit(lambda: caches.flush_order_pages(stand_in.account_id), robust=True)
    holder.order = order
    holder.save(update_fields=["order"])
    return True


def _broker_id_insert(order: Order, broker_order_id: str) -> bool:
    """The id's row for this order, when no order holds it yet: one statement that the unique
    (account, broker id) makes safe against a concurrent claim. False when a row was already there."""
    table = BrokerOrderId._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (account_id, order_id, broker_order_id, superseded_at, created_at) "  # noqa: S608
            "VALUES (%s, %s, %s, NULL, %s) ON CONFLICT (account_id, broker_order_id) DO NOTHING RETURNING id",
            [order.account_id, order.pk, broker_order_id, timezone.now()],
        )
        return cursor.fetchone() is not None


def placement_answer_store(*, order: Order, result: OrderResult, actor=None) -> Order | None:
    """The broker's answer to `order`'s placement, stored in one statement (one round trip, no transaction
    of its own): the columns it changed, the claim of its broker id and its audit row ("sent"); once that
    has committed, the account's kept orders pages and live snapshots go (one round trip to Redis).

    `order` is the row as this request stored it before the send: PENDING, no broker id. The UPDATE only
    matches the row while it is still exactly that (status, broker id and updated_at unchanged), so a postback,
    a poll or the reconciler that got there first is never overwritten; the claim is a plain INSERT, so another
    order holding the broker id (a stand-in) fails the whole statement on the unique constraint. Either way
    nothing is written and None comes back: order_broker_update then stores the answer, locked, as any update
    (broker_id_claim decides about a stand-in). Inside a caller's transaction the statement takes a savepoint,
    so its failure leaves that transaction usable. None, untried, off PostgreSQL.
    """
    if (
        connection.vendor != "postgresql"
        or order.pk is None
        or order.parent_id is not None
        or order.status != Order.Status.PENDING
        or order.broker_order_id
        or not result.broker_order_id
        or _moves_backwards(order, result)
    ):
        return None
    before, stored = order_state(order), applied_values(order)
    answered = copy.copy(order)
    _apply(answered, result)
    answered.updated_at = timezone.now()
    change = _answer_change_sql(answered, fields=changed_fields(answered, stored), stored_at=order.updated_at)
    try:
        # A placement's answer comes outside any transaction: there the statement is its own, no savepoint.
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            event = order_change_with_event(
                change=change, order=answered, kind="sent", before=before, actor=actor, broker_response=result.raw
            )
    except IntegrityError:
        return None
    if event is None:
        return None
    # No save(), so no post_save: the account's kept orders pages go here, with its live snapshots (the broker
    # holds a new order). Outside a transaction, as a placement's answer comes, the change is committed now:
    # both in one round trip. Inside one, the snapshots now and the pages on its commit, as elsewhere.
    account = answered.account
    if connection.in_atomic_block:
        caches.flush_live_snapshots(account=account)
        transaction.on_commit(lambda: caches.flush_order_pages(account.pk), robust=True)
    else:
        caches.flush_after_placement(account=account)
    return answered


def _answer_change_sql(order: Order, *, fields: list[str], stored_at) -> tuple[str, list]:
    """The WITH list of placement_answer_store: the guarded UPDATE, then the broker id's claim as its `gate`."""
    quote = connection.ops.quote_name
    columns = [Order._meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in columns)
    updated_at = Order._meta.get_field("updated_at")
    sql = (
        f"updated AS (UPDATE {quote(Order._meta.db_table)} SET {assignments} "  # noqa: S608 (model columns)
        f"WHERE {quote('id')} = %s AND {quote('status')} = %s AND {quote('broker_order_id')} = '' "
        f"AND {quote('updated_at')} = %s RETURNING {quote('id')}), "
        f"gate AS (INSERT INTO {quote(BrokerOrderId._meta.db_table)} "
        "(account_id, order_id, broker_order_id, superseded_at, created_at) "
        f"SELECT %s, updated.{quote('id')}, %s, NULL, %s FROM updated RETURNING id)"
    )
    params = [
        *(field.get_db_prep_save(getattr(order, field.attname), connection) for field in columns),
        order.pk,
        Order.Status.PENDING,
        updated_at.get_db_prep_value(stored_at, connection),
        order.account_id,
        order.broker_order_id,
        timezone.now(),
    ]
    return sql, params


@transaction.atomic
def order_broker_update(
    *,
    account: TradingAccount,
    result: OrderResult,
    kind: str,
    order: Order | None = None,
    actor=None,
    aggregate: bool = True,
) -> tuple[Order | None, bool]:
    """Move the order the broker speaks of (found, or built when new) to what it says.

    Returns the order (None for an id a replace superseded) and whether anything changed; nothing is written when the update is a repeat or
    would move the order backwards. A slice's change brings its parent's aggregate along (`aggregate=False`:
    the caller aggregates once, after all its slices).
    """
    try:
        if order is not None:
            order = Order.objects.select_for_update().get(pk=order.pk)
        else:
            order = _order_locked_for(account, result)
    except Superseded:
        return None, False
    if order is None:
        order, before = order_from_broker(account=account, result=result), {}
    else:
        before = order_state(order)
        if _moves_backwards(order, result):
            return order, False
    new_id = bool(result.broker_order_id) and result.broker_order_id != order.broker_order_id
    adopted = order.pk is None
    stored = applied_values(order)
    _apply(order, result)
    if new_id and order.pk and not broker_id_claim(order, result.broker_order_id):
        return Order.objects.get(pk=order.pk), False
    if order.pk and order_state(order) == before:
        return order, False
    order.save(update_fields=None if adopted else changed_fields(order, stored))
    if adopted:
        BrokerOrderId.objects.create(account_id=account.pk, order=order, broker_order_id=order.broker_order_id)
    order_event_record(order=order, kind=kind, before=before, actor=actor, broker_response=result.raw)
    if aggregate and order.parent_id is not None:
        parent_aggregate(parent=Order.objects.select_for_update().get(pk=order.parent_id), actor=actor)
    return order, True


def orders_reconcile(*, account: TradingAccount, results: Iterable[OrderResult]) -> int:
    """Bring Thor's orders in line with the broker's order book; returns how many changed.

    A broker order no order holds is adopted as a new order only when no unsettled placement of the
    account can have made it (accounts.placement_matching); one that must be a placement's is given to it,
    and one that may be is left for that placement's settling to decide.
    """
    results = list(results)
    held = held_broker_ids(account)
    changed = 0
    for result in results:
        if result.broker_order_id in held or (
            result.tag and account.orders.filter(client_order_id=result.tag).exists()
        ):
            changed += order_broker_update(account=account, result=result, kind="synced")[1]
            continue
        owner = unclaimed_owner(account, result, results)
        if owner is Unclaimed.UNDECIDED:
            continue
        if owner is Unclaimed.FOREIGN:
            changed += order_broker_update(account=account, result=result, kind="synced")[1]
        else:
            changed += order_broker_update(account=account, result=result, kind="placement_confirmed", order=owner)[1]
    return changed


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
        try:
            order = _order_locked_for(account, result)
        except Superseded:
            return False
        if order is not None:
            return order_broker_update(account=account, result=result, kind="broker_postback", order=order)[1]
    if not accounts:
        logger.info("Postback for Kite order %s of an account Thor does not hold", result.broker_order_id)
        return False
    return order_broker_update(account=accounts[0], result=result, kind="broker_postback")[1]
