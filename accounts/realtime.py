"""Order and position updates for the order WebSocket (accounts.consumers), one group per account."""

from decimal import Decimal
from functools import partial

from django.db import transaction
from django.utils import timezone

from accounts.models import Order
from thor import money, realtime


def account_group(account_id: int) -> str:
    return f"orders.account.{account_id}"


def order_message_data(order: Order) -> dict:
    """The order as the orders API shows it (`OrderOutputSerializer`; a test holds the two together),
    built here so that publishing an update needs nothing of the API layer."""
    return {
        "id": order.pk,
        "client_order_id": order.client_order_id,
        "broker_order_id": order.broker_order_id,
        "tradingsymbol": order.symbol,
        "exchange": order.exchange,
        "transaction_type": order.side,
        "quantity": money.quantity(order.quantity),
        "order_type": order.order_type,
        "product": order.product,
        "price": money.price_text(order.price),
        "trigger_price": money.price_text(order.trigger_price),
        "validity": order.validity,
        "tag": order.tag,
        "status": order.status,
        "status_message": order.status_message,
        "filled_quantity": money.quantity(order.filled_quantity),
        "average_price": money.price_text(order.average_price),
        "created_at": _timestamp(order.created_at),
        "updated_at": _timestamp(order.updated_at),
    }


def _timestamp(value) -> str:
    # DRF's DateTimeField rendering: ISO 8601 in the current time zone, "Z" for UTC.
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def publish_order_update(*, order: Order, before: dict) -> None:
    """Tell the account's sockets the order's new state once the change commits, never if it rolls back.

    The message is built now: a paper order is placed and filled in one transaction, and each step is
    its own update. A fill also says `position_update`, so clients refetch positions.
    """
    messages = [{"type": "order_update", "account_id": order.account_id, "data": order_message_data(order)}]
    if order.filled_quantity > Decimal(before.get("filled_quantity") or 0):
        messages.append({"type": "position_update", "account_id": order.account_id})
    transaction.on_commit(partial(realtime.publish, group=account_group(order.account_id), messages=messages))
