"""Live orders above the exchange's freeze quantity, sliced by the broker itself (Kite's autoslice).

As on paper (accounts.slicing), the order the trader placed is the parent and each slice a child order
(Order.parent), all written (PENDING, their send started) in the placement's transaction before anything is
sent; Thor's own split (accounts.slicing.freeze_slices: full freeze-quantity slices, then the rest) is the
one Kite makes, and is checked against Kite's answer. Then ONE order call (`place_sliced`), whatever the
number of slices, carrying the parent's client order id as the tag (Kite stamps it on every slice):

- answered: the parent holds Kite's parent order id; each slice Kite placed gives its child its broker id
  (claimed like any broker id, unique per account), each slice Kite refused makes its child REJECTED with
  Kite's message; the parent shows the aggregate (accounts.slicing.parent_aggregate).
- refused for good: parent and children REJECTED with Kite's reason, the key answers that refusal.
- lost (no answer, a 5xx): parent and children UNKNOWN, never sent again; `slices_settle` reads the book for
  the orders carrying the parent's tag and gives each to a child of the same quantity. Once the settle window
  has passed with the book read, a child none was found for is REJECTED ("Not placed"), or NEEDS_REVIEW when
  Kite had said it took the call.

A postback or a poll about a slice names its broker id (the child's, once claimed) or, before the answer is
in, the parent's tag: accounts.broker_updates gives it to a child of the parent then, never to the parent.
Every child's change brings the parent's aggregate along.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import order_save_with_event, order_state
from accounts.broker_updates import broker_id_claim, order_broker_update
from accounts.live import live_call, live_order_cancel, live_snapshots_forget, order_request_of
from accounts.models import Order, TradingAccount
from accounts.placement import UNCERTAIN_ERRORS, orders_needing_review, placement_settle_window
from accounts.placement_matching import held_broker_ids
from accounts.slicing import children_load, parent_aggregate
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import OrderResult, SlicedPlacement, SliceOutcome
from brokers.registry import ADAPTERS

logger = logging.getLogger("accounts.placement")

SETTLING = (Order.Status.UNKNOWN, Order.Status.NEEDS_REVIEW)


def broker_slices(account: TradingAccount) -> bool:
    """Does the live account's broker slice an order above the freeze quantity itself (Kite)?"""
    if account.mode != TradingAccount.Mode.LIVE or account.connection is None:
        return False
    adapter = ADAPTERS.get(account.connection.app.kind)
    return adapter is not None and adapter.slices_orders


def _children_locked(parent: Order) -> list[Order]:
    return list(Order.objects.select_for_update().filter(parent_id=parent.pk).order_by("id"))


def _free(rows: list[Order]) -> list[Order]:
    """The children no broker order is known for yet."""
    return [row for row in rows if not row.broker_order_id and row.status in Order.UNSETTLED_STATUSES]


def _parent_locked(parent: Order) -> Order:
    return Order.objects.select_for_update(of=("self",)).select_related("account__connection__app").get(pk=parent.pk)


def _settle_delay(checks: int) -> timedelta:
    return timedelta(seconds=min(2**checks, 60))


def live_slices_send(*, parent: Order, actor) -> Order:
    """Send a stored sliced order in one call. Raises the BrokerError when the broker refused it for certain."""
    request = order_request_of(parent)
    try:
        placed = live_call(parent.account, lambda adapter: adapter.place_sliced(request))
    except BrokerError as error:
        if error.code in UNCERTAIN_ERRORS:
            return _slices_uncertain(parent=parent, error=error, actor=actor)
        _slices_refused(parent=parent, error=error, actor=actor)
        raise
    live_snapshots_forget(account=parent.account)
    return slices_apply(parent=parent, placed=placed, actor=actor)


def live_slices_cancel(*, order: Order, actor) -> Order:
    """Cancel a sliced order: each of its working slices at the broker (Kite holds no order for the parent
    to cancel). Each slice is CANCELLED when Kite says so, the parent's aggregate following; a slice Kite
    would not cancel (filled meanwhile) stays as it is. Raises the first refusal when no slice was cancelled."""
    parent, refusals = order, []
    working = parent.children.filter(status__in=(Order.Status.OPEN, Order.Status.TRIGGER_PENDING))
    for child in working.exclude(broker_order_id="").order_by("id"):
        try:
            live_order_cancel(order=child, actor=actor)
        except BrokerError as error:
            refusals.append(error)
    parent.refresh_from_db()
    if refusals and not parent.children.filter(status=Order.Status.CANCELLED).exists():
        raise refusals[0]
    return children_load(parent)


def _slices_refused(*, parent: Order, error: BrokerError, actor) -> None:
    message = (error.broker_message or error.message)[:500]
    with transaction.atomic():
        for order in [*_children_locked(parent), _parent_locked(parent)]:
            before = order_state(order)
            order.status, order.status_message, order.send_ended_at = Order.Status.REJECTED, message, timezone.now()
            order_save_with_event(
                order=order, kind="rejected", before=before, actor=actor, broker_response={"code": error.code}
            )


def _slices_uncertain(*, parent: Order, error: BrokerError, actor) -> Order:
    """UNKNOWN first, committed (a crash from here on leaves rows the settle task picks up), then look.
    Only the parent is due for settling: its children are settled with it, never on their own."""
    message = f"Placement unconfirmed: the broker did not answer ({error.code}); Thor is checking its order book."
    with transaction.atomic():
        for order in [*_children_locked(parent), _parent_locked(parent)]:
            before = order_state(order)
            order.status, order.status_message = Order.Status.UNKNOWN, message
            order.send_ended_at = timezone.now()
            order.send_acknowledged = error.code == BrokerErrorCode.UNCONFIRMED
            order.settle_checks = 0
            order.settle_after = timezone.now() + _settle_delay(0) if order.pk == parent.pk else None
            order_save_with_event(order=order, kind="placement_unknown", before=before, actor=actor)
    for attempt in range(settings.THOR_PLACEMENT_LOOKUPS):
        if attempt:
            time.sleep(settings.THOR_PLACEMENT_LOOKUP_INTERVAL)
        parent.refresh_from_db()
        settled = slices_settle(parent=parent)
        if settled.status not in SETTLING:
            return settled
    parent.refresh_from_db()
    return children_load(parent)


def _extra_child(parent: Order, index: int) -> Order:
    """A slice Kite made beyond Thor's split: a child of its own, its quantity from the broker's word."""
    return Order.objects.create(
        parent=parent,
        account_id=parent.account_id,
        client_order_id=f"{parent.client_order_id}-{index}"[:40],
        symbol=parent.symbol,
        exchange=parent.exchange,
        side=parent.side,
        quantity=0,
        order_type=parent.order_type,
        product=parent.product,
        price=parent.price,
        trigger_price=parent.trigger_price,
        validity=parent.validity,
        algo_id=parent.algo_id,
        send_started_at=parent.send_started_at,
    )


def _plan(rows: list[Order], children: tuple[SliceOutcome, ...], parent: Order) -> list[tuple[Order, SliceOutcome]]:
    """Which child each of Kite's slices is: the child in the same place when it is free (Kite slices as
    Thor does), else the first free one. A slice whose id a child holds already (a postback came first) is
    that child's."""
    held = {row.broker_order_id for row in rows if row.broker_order_id}
    free = _free(rows)
    plan = []
    for index, outcome in enumerate(children):
        if outcome.broker_order_id and outcome.broker_order_id in held:
            continue
        same_place = rows[index] if index < len(rows) else None
        row = same_place if same_place in free else (free[0] if free else _extra_child(parent, index + 1))
        if row in free:
            free.remove(row)
        plan.append((row, outcome))
    return plan


@transaction.atomic
def slices_apply(*, parent: Order, placed: SlicedPlacement, actor) -> Order:
    """Kite's answer to the sliced placement, applied: each slice to its child, then the parent."""
    account = parent.account
    rows = _children_locked(parent)
    plan = _plan(rows, placed.children, parent)
    planned = {row.pk for row, _ in plan}
    for row in _free(rows):
        if row.pk not in planned:
            # Kite sliced it in fewer than Thor did: the rest of the quantity is in the slices it made.
            _reject(row, f"Not placed: Kite sliced the order into {len(placed.children)}.", actor=actor)
    for row, outcome in plan:
        if outcome.broker_order_id:
            result = OrderResult.acknowledged(outcome.broker_order_id, order_request_of(row))
            order_broker_update(account=account, result=result, kind="sent", order=row, actor=actor, aggregate=False)
        else:
            _reject(row, outcome.error, actor=actor, broker_response={"error": outcome.error})
    locked = _parent_locked(parent)
    locked.send_ended_at = timezone.now()
    if not locked.broker_order_id and broker_id_claim(locked, placed.broker_order_id):
        locked.broker_order_id = placed.broker_order_id
    return parent_aggregate(parent=locked, actor=actor)


def _reject(row: Order, message: str, *, actor=None, broker_response: dict | None = None) -> None:
    before = order_state(row)
    row.status, row.status_message, row.settle_after = Order.Status.REJECTED, message[:500], None
    order_save_with_event(order=row, kind="rejected", before=before, actor=actor, broker_response=broker_response)


def _candidates(parent: Order) -> list[OrderResult] | None:
    """The broker's orders carrying the parent's tag (every slice Kite placed); None: the book was unread."""
    since = parent.send_started_at or parent.created_at
    try:
        found = live_call(parent.account, lambda adapter: adapter.placement_candidates(order_request_of(parent), since))
    except BrokerError as error:
        logger.warning("Order book unreadable while settling sliced order %s: %s", parent.pk, error.code)
        return None
    return sorted(found, key=lambda result: result.broker_order_id)


def slices_settle(*, parent: Order, now=None) -> Order:
    """Settle a sliced order whose answer was lost from the broker's book (see the module doc)."""
    now = now or timezone.now()
    if parent.parent_id is not None:
        parent = Order.objects.get(pk=parent.parent_id)
    if parent.status not in SETTLING:
        return children_load(parent)
    candidates = _candidates(parent)
    with transaction.atomic():
        rows = _children_locked(parent)
        locked = _parent_locked(parent)
        if locked.status not in SETTLING:
            return children_load(locked)
        held = held_broker_ids(locked.account)
        for candidate in candidates or ():
            free = _free(rows)
            if candidate.broker_order_id in held or not free:
                continue
            row = next((row for row in free if row.quantity == candidate.quantity), free[0])
            row = order_broker_update(
                account=locked.account, result=candidate, kind="placement_confirmed", order=row, aggregate=False
            )[0]
            rows = [row if other.pk == row.pk else other for other in rows]
        return _slices_settled(locked, rows, read=candidates is not None, now=now)


def _slices_settled(parent: Order, rows: list[Order], *, read: bool, now) -> Order:
    """After a look at the book: done when every child is found; past the settle window, the children still
    missing are REJECTED (NEEDS_REVIEW when Kite said it took the call); else the parent looks again later."""
    window_closed = now >= (parent.send_started_at or parent.created_at) + placement_settle_window(parent)
    for row in rows:
        if row.status == Order.Status.PENDING and not row.broker_order_id:
            # Its sender died mid-send (the parent was picked up as orphaned): unknown, as the parent is.
            before = order_state(row)
            row.status, row.status_message = Order.Status.UNKNOWN, parent.status_message
            order_save_with_event(order=row, kind="placement_orphaned", before=before, actor=None)
    if read and window_closed:
        for row in _free(rows):
            if row.status == Order.Status.NEEDS_REVIEW:
                continue
            if parent.send_acknowledged:
                before = order_state(row)
                row.status = Order.Status.NEEDS_REVIEW
                row.status_message = "Needs review: Kite took the sliced order, but its book never showed this slice."
                # Counted and logged as any placement needing a person (accounts.placement._needs_review).
                logger.warning("Slice %s of order %s needs review: not in the book", row.pk, parent.pk)
                orders_needing_review.labels(broker=parent.account.broker).inc()
                order_save_with_event(order=row, kind="placement_needs_review", before=before, actor=None)
            else:
                _reject(row, "Not placed: the broker's order book never showed this slice.")
    aggregated = parent_aggregate(parent=parent)
    if aggregated.status in SETTLING:
        checks = aggregated.settle_checks + 1
        delay = _settle_delay(16 if aggregated.status == Order.Status.NEEDS_REVIEW else checks)
        Order.objects.filter(pk=aggregated.pk).update(settle_checks=checks, settle_after=now + delay)
    else:
        Order.objects.filter(pk=aggregated.pk).update(settle_after=None)
    return aggregated
