"""Order and position updates for the order WebSocket (accounts.consumers), one group per account."""

from decimal import Decimal
from functools import partial

from django.db import transaction

from accounts.api.serializers import OrderOutputSerializer
from accounts.models import Order
from thor import realtime


def account_group(account_id: int) -> str:
    return f"orders.account.{account_id}"


def publish_order_update(*, order: Order, before: dict) -> None:
    """Tell the account's sockets the order's new state once the change commits, never if it rolls back.

    The message is built now: a paper order is placed and filled in one transaction, and each step is
    its own update. A fill also says `position_update`, so clients refetch positions.
    """
    messages = [
        {"type": "order_update", "account_id": order.account_id, "data": dict(OrderOutputSerializer(order).data)}
    ]
    if order.filled_quantity > Decimal(before.get("filled_quantity") or 0):
        messages.append({"type": "position_update", "account_id": order.account_id})
    transaction.on_commit(partial(realtime.publish, group=account_group(order.account_id), messages=messages))
