"""OrderEvent rows: one for every state change of an order and for account-wide actions.

Every order change is also published to the order WebSocket once it commits. The rows are hash-chained per
account after they commit, off this path (accounts.audit_chain), and kept for THOR_AUDIT_RETENTION_DAYS.
"""

from decimal import Decimal

from django.db import transaction

from accounts.models import Order, OrderEvent, TradingAccount
from accounts.streams import (
    event_with_seq_create,
    event_with_seq_create_gated,
    messages_for_change,
    publish_order_change,
)
from thor.logging import correlation_id_var

ORDER_AUDIT_FIELDS = (
    "status",
    "status_message",
    "quantity",
    "price",
    "trigger_price",
    "order_type",
    "validity",
    "filled_quantity",
    "average_price",
    "charges",
    "broker_order_id",
)


def order_state(order: Order) -> dict:
    return {field: _jsonable(getattr(order, field)) for field in ORDER_AUDIT_FIELDS}


def _jsonable(value):
    if isinstance(value, Decimal):
        # By value, not by scale: 1500.0 from the broker and 1500.0000 from the database are one state.
        return format(value.normalize(), "f")
    return value if value is None or isinstance(value, str) else str(value)


def _event_fields(*, order: Order, kind: str, before: dict, actor, broker_response: dict | None) -> dict:
    return {
        "count": len(messages_for_change(order=order, before=before)),
        "account_id": order.account_id,
        "order": order,
        "actor": actor,
        "kind": kind,
        "request_id": _request_id(),
        "before": before,
        "after": order_state(order),
        "broker_response": broker_response or {},
        "order_updated_at": order.updated_at,
    }


def order_event_record(
    *, order: Order, kind: str, before: dict | None = None, actor=None, broker_response: dict | None = None
) -> OrderEvent:
    fields = _event_fields(order=order, kind=kind, before=before or {}, actor=actor, broker_response=broker_response)
    # The sequence numbers and the row that can resend those messages commit together, or neither does.
    # Inside a caller's transaction no savepoint: nobody goes on after a failed audit row, the whole
    # change rolls back, and each savepoint is two more round trips to the database.
    with transaction.atomic(savepoint=False):
        event = event_with_seq_create(**fields)
        publish_order_change(order=order, event=event)
    return event


def order_change_with_event(
    *, change: tuple[str, list], order: Order, kind: str, before: dict, actor=None, broker_response: dict | None = None
) -> OrderEvent | None:
    """The order's change, already made on `order` in memory and written by `change` (a WITH list whose last
    query, `gate`, returns a row when it wrote: accounts.streams.event_with_seq_create_gated), and its audit
    row, in one statement: outside a transaction, one round trip that commits both or neither.

    None when the gate returned nothing (nothing was written, nothing is published)."""
    fields = _event_fields(order=order, kind=kind, before=before, actor=actor, broker_response=broker_response)
    event = event_with_seq_create_gated(gate=change, **fields)
    if event is not None:
        publish_order_change(order=order, event=event)
    return event


def order_save_with_event(
    *, order: Order, kind: str, before: dict, actor=None, broker_response: dict | None = None
) -> Order:
    """Save the order and record the change from `before` (the audit row, the socket's update)."""
    order.save()
    order_event_record(order=order, kind=kind, before=before, actor=actor, broker_response=broker_response)
    return order


def account_event_record(*, account: TradingAccount, kind: str, before: dict, after: dict, actor=None) -> OrderEvent:
    return OrderEvent.objects.create(
        account=account, actor=actor, kind=kind, request_id=_request_id(), before=before, after=after
    )


def _request_id() -> str:
    request_id = correlation_id_var.get()
    return "" if request_id == "-" else request_id
