"""Order writes for every account: place, modify, cancel and batches, each idempotent by Idempotency-Key."""

from accounts.orders.batch import BatchLeg, BatchResult, order_batch_place
from accounts.orders.change import order_cancel, order_modify
from accounts.orders.place import order_place

__all__ = ["BatchLeg", "BatchResult", "order_batch_place", "order_cancel", "order_modify", "order_place"]
