"""Modifying and cancelling an open order, each applied once whatever the concurrency.

The Idempotency-Key is checked and claimed in the same locked transaction that checks the order (and,
on paper, applies the change), so twenty identical requests make one change and one broker call.
"""

from dataclasses import replace

from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework import status

from accounts import autoslice, live
from accounts.account_locks import account_lock
from accounts.audit import order_event_record, order_state
from accounts.checks import OPEN_STATUSES, order_egress_check, order_request_check, trading_enabled_check
from accounts.models import Order, TradingAccount
from accounts.orders.idempotency import replayed_order, request_forget, request_record
from accounts.orders.place import last_prices, pre_trade_check
from accounts.paper import paper_order_cancel, paper_order_submit
from accounts.paper_depth import PassDepth
from accounts.price_bands import band_quote, price_band_check
from accounts.slicing import children_load
from brokers.adapters.errors import BrokerError
from brokers.adapters.types import OrderRequest
from brokers.registry import modifications_per_order
from thor.errors import ApplicationError
from thor.money import quantity as quantity_text

MODIFIABLE_FIELDS = ("quantity", "price", "trigger_price", "order_type", "validity")


def _open_order(*, account: TradingAccount, order_id: int) -> Order:
    order = account.orders.filter(pk=order_id).first()
    if order is None:
        raise ApplicationError("Not found.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
    if order.status not in OPEN_STATUSES:
        raise ApplicationError(
            f"The order is {order.status}; only open orders can change.",
            code="order_not_open",
            status_code=status.HTTP_409_CONFLICT,
        )
    return order


def _not_sliced_check(order: Order) -> None:
    """A sliced order (or one of its slices) is not modified: the parent's quantity is its slices' sum, and
    a slice changed alone would part from it. It is cancelled (the parent cancels its open slices) and placed
    again."""
    if order.parent_id is not None or order.children.exists():
        raise ApplicationError(
            "A sliced order cannot be modified: cancel it and place it again.",
            code="order_sliced",
            status_code=status.HTTP_409_CONFLICT,
        )


def _modifications_left_check(*, account: TradingAccount, order: Order) -> None:
    """A broker that caps the modifications of one order (Kite: 25) refuses the next with an error that reads as
    an outage: Thor says what it is before sending anything."""
    limit = modifications_per_order(account.connection.app.kind) if account.connection else None
    if limit is not None and order.events.filter(kind="modified").count() >= limit:
        raise ApplicationError(
            f"This order has been modified {limit} times, the most the broker allows: cancel it and place a new one.",
            code="order_modification_limit",
            status_code=status.HTTP_409_CONFLICT,
        )


def _answered(*, account, key, operation, fingerprint, order: Order) -> Order:
    request_record(
        account=account,
        key=key,
        operation=operation,
        fingerprint=fingerprint,
        response_status=200,
        response_body={"order_id": order.pk},
    )
    return order


def _live_change(*, account, key, operation, fingerprint, change) -> Order:
    """Run a live modify or cancel whose key is claimed; the key answers its result, or is freed on failure."""
    try:
        order = change()
    except BrokerError:
        request_forget(account=account, key=key)
        raise
    return _answered(account=account, key=key, operation=operation, fingerprint=fingerprint, order=order)


def _changed(order: Order, changes: dict) -> OrderRequest:
    return replace(
        live.order_request_of(order), **{field: changes[field] for field in MODIFIABLE_FIELDS if field in changes}
    )


def order_modify(
    *, account: TradingAccount, order_id: int, changes: dict, idempotency_key: str | None, fingerprint: str, actor
) -> Order:
    """Change an open order's quantity, prices, type or validity (checked like a new order)."""
    # Prices may come from a broker: read them before the lock, for the order's instrument (which no
    # modify changes) and, on paper, the positions.
    unlocked = account.orders.filter(pk=order_id).first()
    prices = last_prices(account, [live.order_request_of(unlocked)]) if unlocked else {}
    # The price band's quote too: a broker call, for the order as changed (its type decides whether a band applies).
    band = band_quote(account=account, request=_changed(unlocked, changes)) if unlocked else None
    with transaction.atomic():
        locked = account_lock(account_id=account.pk, live=account.mode == TradingAccount.Mode.LIVE)
        replayed = replayed_order(account=locked, key=idempotency_key, fingerprint=fingerprint)
        if replayed is not None:
            return replayed
        order = _open_order(account=locked, order_id=order_id)
        _not_sliced_check(order)
        trading_enabled_check(account=locked)
        request = _changed(order, changes)
        if request.quantity <= order.filled_quantity:
            # Part of it has filled already (paper from the book's depth, or at the broker): only the rest can change.
            raise ValidationError(
                {
                    "quantity": [
                        f"{quantity_text(order.filled_quantity)} have filled: the quantity must be more than that."
                    ]
                }
            )
        instrument = order_request_check(request=request)
        price_band_check(account=locked, request=request, instrument=instrument, quote=band)
        depth = PassDepth(prices)
        pre_trade_check(account=locked, request=request, prices=prices, replacing=order, depth=depth)
        if locked.mode == TradingAccount.Mode.LIVE:
            _modifications_left_check(account=locked, order=order)
            request_record(account=locked, key=idempotency_key, operation="modify", fingerprint=fingerprint)
        else:
            before = order_state(order)
            for field in MODIFIABLE_FIELDS:
                setattr(order, field, getattr(request, field))
            order.save()
            order_event_record(order=order, kind="modified", before=before, actor=actor)
            paper_order_submit(
                account=locked,
                order=order,
                last_price=prices.get((order.exchange, order.symbol)),
                depth=depth,
                actor=actor,
            )
            return _answered(
                account=locked, key=idempotency_key, operation="modify", fingerprint=fingerprint, order=order
            )
    return _live_change(
        account=account,
        key=idempotency_key,
        operation="modify",
        fingerprint=fingerprint,
        change=lambda: live.live_order_modify(order=order, request=request, actor=actor),
    )


def order_cancel(
    *, account: TradingAccount, order_id: int, idempotency_key: str | None, fingerprint: str, actor
) -> Order:
    with transaction.atomic():
        locked = account_lock(account_id=account.pk, live=account.mode == TradingAccount.Mode.LIVE)
        replayed = replayed_order(account=locked, key=idempotency_key, fingerprint=fingerprint)
        if replayed is not None:
            return replayed
        order = _open_order(account=locked, order_id=order_id)
        if locked.mode == TradingAccount.Mode.PAPER:
            paper_order_cancel(order=order, actor=actor)
            children_load(order)
            return _answered(
                account=locked, key=idempotency_key, operation="cancel", fingerprint=fingerprint, order=order
            )
        order_egress_check(account=locked)
        request_record(account=locked, key=idempotency_key, operation="cancel", fingerprint=fingerprint)
    return _live_change(
        account=account,
        key=idempotency_key,
        operation="cancel",
        fingerprint=fingerprint,
        # A sliced order (Kite's autoslice) is cancelled slice by slice: Kite has no order for its parent.
        change=lambda: (autoslice.live_slices_cancel if order.children.exists() else live.live_order_cancel)(
            order=order, actor=actor
        ),
    )
