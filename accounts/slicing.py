"""Orders above the exchange's freeze quantity, placed as slices (paper here; live Kite: accounts.autoslice).

The order the trader places is the parent: it holds the whole quantity and is the order the API answers
and lists. Its slices are child orders (Order.parent set), each at most the freeze quantity in whole lots,
at most MAX_SLICES of them (Kite's autoslice limit): each has its own status and fills, and the parent
shows their aggregate (`parent_aggregate`):

- filled quantity: the children's fills summed; average price: weighted by each child's fills;
- status: PENDING while every child is; UNKNOWN while any child's placement is (a live send whose answer
  was lost: accounts.autoslice), then NEEDS_REVIEW while any child waits for a person; OPEN while any child is still working; COMPLETE when every child
  is; REJECTED only when every child is; any other end (some slices filled, some rejected, cancelled or
  expired) is CANCELLED, Kite's word for an order that ended with part of its quantity unfilled, with the
  filled quantity saying how much did fill and the status message naming each slice that did not.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError

from accounts.audit import order_event_record, order_state
from accounts.market_data import Instrument
from accounts.models import Order

MAX_SLICES = 10
WORKING_STATUSES = (
    Order.Status.PENDING,
    Order.Status.UNKNOWN,
    Order.Status.NEEDS_REVIEW,
    Order.Status.OPEN,
    Order.Status.TRIGGER_PENDING,
)


def slice_size(instrument: Instrument) -> int | None:
    """The largest quantity one slice may carry (the freeze quantity, down to whole lots); None: no limit."""
    if instrument.freeze_quantity is None:
        return None
    return max(instrument.freeze_quantity // instrument.lot_size, 1) * instrument.lot_size


def freeze_slices(*, instrument: Instrument, quantity: Decimal) -> list[Decimal]:
    """The slices an order of `quantity` is placed as: full slices, then the rest; one slice when it fits.

    Raises a ValidationError on quantity naming the limit when more than MAX_SLICES would be needed."""
    size = slice_size(instrument)
    if size is None or quantity <= size:
        return [quantity]
    full, rest = divmod(quantity, size)
    count = int(full) + (1 if rest else 0)
    if count > MAX_SLICES:
        raise ValidationError(
            {
                "quantity": [
                    f"Above {MAX_SLICES} slices of the exchange's freeze quantity {instrument.freeze_quantity} "
                    f"for {instrument.exchange}:{instrument.symbol}: place at most {MAX_SLICES * size} an order."
                ]
            }
        )
    return [Decimal(size)] * int(full) + ([rest] if rest else [])


def _aggregate_status(children: list[Order]) -> tuple[str, str]:
    statuses = {child.status for child in children}
    if statuses == {Order.Status.PENDING}:
        return Order.Status.PENDING, ""
    for unsettled in (Order.Status.UNKNOWN, Order.Status.NEEDS_REVIEW):
        if unsettled in statuses:
            # The parent is what the settle task looks at: it stays unsettled until every slice is settled.
            return unsettled, next(child.status_message for child in children if child.status == unsettled)
    if statuses & set(WORKING_STATUSES):
        return Order.Status.OPEN, ""
    if len(statuses) == 1:
        status = statuses.pop()
        message = children[0].status_message if status == Order.Status.REJECTED else ""
        return status, message
    unfilled = [
        f"slice {index} {child.status}" + (f": {child.status_message}" if child.status_message else "")
        for index, child in enumerate(children, start=1)
        if child.status != Order.Status.COMPLETE
    ]
    return Order.Status.CANCELLED, "; ".join(unfilled)[:500]


def parent_aggregate(*, parent: Order, actor=None) -> Order:
    """Bring the parent's status, filled quantity and average price in line with its children, recording
    the change (audit row and socket update) when there is one. Run with the account locked."""
    children = list(parent.children.order_by("id"))
    filled = sum((child.filled_quantity for child in children), Decimal("0"))
    value = sum(
        (child.filled_quantity * child.average_price for child in children if child.average_price is not None),
        Decimal("0"),
    )
    charged = [child.charges for child in children if child.charges is not None]
    status, message = _aggregate_status(children)
    before = order_state(parent)
    parent.filled_quantity = filled
    parent.average_price = (value / filled).quantize(Decimal("0.0001")) if filled else None
    parent.charges = sum(charged, Decimal("0.00")) if charged else None
    parent.status = status
    parent.status_message = message
    parent.child_orders = children  # type: ignore[attr-defined]  # what the presenter shows
    if order_state(parent) != before:
        parent.save()
        order_event_record(order=parent, kind="slices_updated", before=before, actor=actor)
    return parent


def children_load(order: Order) -> Order:
    """The order with its children read (`child_orders`, as the presenter shows them)."""
    order.child_orders = list(order.children.order_by("id"))  # type: ignore[attr-defined]
    return order
