"""Live accounts: reads through the snapshot cache, order calls through the broker guard.

No function here holds a database transaction across a broker call.
"""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import caches
from accounts.audit import order_event_record, order_save_with_event, order_state
from accounts.broker_updates import order_broker_update
from accounts.models import BrokerOrderId, Order, TradingAccount
from accounts.streams import account_group
from brokers.adapters.base import BrokerAdapter
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import OrderRequest
from brokers.models import BrokerConnection
from brokers.services import broker_call, connection_require_active
from thor import realtime, snapshots

logger = logging.getLogger("accounts.live")


def _connection(account: TradingAccount) -> BrokerConnection:
    if account.connection is None:
        raise BrokerError(
            "This account is no longer linked; link it again.", code=BrokerErrorCode.TOKEN_EXPIRED, permanent=True
        )
    return account.connection


def _connection_for_call(account: TradingAccount) -> BrokerConnection:
    """The account's session with everything a broker call reads. A lean account (the reads' and a placement's
    cached one, accounts.selectors.account_for_read_get) carries only its session's state: its tokens, its
    app's keys and the app's tenant come in one query here, not one query a field as deferred fields load."""
    connection = _connection(account)
    if connection.get_deferred_fields():
        connection = BrokerConnection.objects.select_related("app__tenant").get(pk=connection.pk)
        account.connection = connection
    return connection


def live_call(account: TradingAccount, call: Callable[[BrokerAdapter], object]):
    """`call(adapter)` acting for this account (Schwab: its hashValue; one Kite login is one account)."""
    return broker_call(_connection_for_call(account), call, account_id=account.broker_account_id)


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
    read = snapshots.read_through(
        caches.live_snapshot_key(account, what),
        lambda: live_call(account, call),
        fresh_ttl=settings.THOR_LIVE_FRESH_SECONDS,
        stale_ttl=settings.THOR_LIVE_STALE_SECONDS,
        force=force,
        present=present,
    )
    if what == "positions" and read.source == "live":
        positions_stored_publish(account=account, stored_at=read.as_of.timestamp())
    return read


def positions_stored_publish(*, account: TradingAccount, stored_at: float) -> None:
    """The broker's positions were just read and stored: the account's open sockets read their book again
    (accounts.books), so that positions changed outside Thor (the trader's own app at the broker) move on the
    socket from the next tick, not only after the follow marks' renewal. Not a stream message: no `seq`,
    nothing a client is sent."""
    realtime.publish(
        group=account_group(account.pk),
        messages=[{"type": "book.stored", "account_id": account.pk, "stored_at": stored_at}],
    )


def live_fresh_body(*, account: TradingAccount, what: str, present: snapshots.Present) -> snapshots.FreshBody | None:
    """The fresh snapshot as `present` presented it, without the data behind it; None when there is none
    (then live_read). As live_read: an ended session answers reauth before any cache."""
    connection_require_active(_connection(account))
    return snapshots.fresh_body(caches.live_snapshot_key(account, what), present)


def live_snapshot_peek(*, account: TradingAccount, what: str):
    """The last-good data, without calling the broker (None when there is none)."""
    stale = snapshots.peek(caches.live_snapshot_key(account, what))
    return stale.data if stale else None


def live_snapshots_forget(*, account: TradingAccount) -> None:
    """An order changed the account: the next read goes to the broker."""
    caches.flush_live_snapshots(account=account)


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
        algo_id=order.algo_id,
    )


def live_order_modify(*, order: Order, request: OrderRequest, actor) -> Order:
    """Change a working order at the broker. Schwab replaces it: the old id is cancelled and a new one made,
    which the order follows (the old id is kept as superseded, so no read brings it back as an order)."""
    changes = {
        field: getattr(request, field)
        for field in ("quantity", "price", "trigger_price", "order_type", "validity")
        if getattr(request, field) != getattr(order, field)
    }
    before = order_state(order)
    sent_at = timezone.now()
    try:
        result = live_call(order.account, lambda adapter: adapter.modify(order.broker_order_id, changes))
    except BrokerError as error:
        if error.code != BrokerErrorCode.UNCONFIRMED:
            raise
        result = None
    for field, value in changes.items():
        setattr(order, field, value)
    live_snapshots_forget(account=order.account)
    with transaction.atomic():
        if result is None:
            # Replaced, but the new order was not named: find it as a lost placement is found.
            _supersede(order)
            order.status = Order.Status.UNKNOWN
            order.status_message = "Modified; confirming the broker's new order id from its order book."
            order.send_started_at, order.send_ended_at, order.send_acknowledged = sent_at, timezone.now(), True
            order.settle_checks, order.settle_after = 0, timezone.now()
            return order_save_with_event(order=order, kind="modified", before=before, actor=actor)
        if result.broker_order_id and result.broker_order_id != order.broker_order_id:
            _supersede(order)
            order.broker_order_id = result.broker_order_id
            BrokerOrderId.objects.get_or_create(
                account_id=order.account_id, broker_order_id=result.broker_order_id, defaults={"order": order}
            )
        return order_save_with_event(
            order=order, kind="modified", before=before, actor=actor, broker_response=result.raw
        )


def _supersede(order: Order) -> None:
    """The order's broker id was replaced: keep it in its lineage as superseded, so no read revives it."""
    if order.broker_order_id:
        BrokerOrderId.objects.update_or_create(
            account_id=order.account_id,
            broker_order_id=order.broker_order_id,
            defaults={"order": order, "superseded_at": timezone.now()},
        )
        order.broker_order_id = ""


def live_order_cancel(*, order: Order, actor) -> Order:
    """Ask the broker to cancel. The order is CANCELLED when the broker says so (its own answer, read right
    after), never on the strength of the request alone: a cancel can fail or race a fill at the broker."""
    before = order_state(order)
    result = live_call(order.account, lambda adapter: adapter.cancel(order.broker_order_id))
    order_event_record(order=order, kind="cancel_requested", before=before, actor=actor, broker_response=result.raw)
    live_snapshots_forget(account=order.account)
    try:
        current = live_call(order.account, lambda adapter: adapter.order(order.broker_order_id))
    except BrokerError as error:
        logger.warning("Order %s: cancel sent, its state unread (%s)", order.pk, error.code)
        order.refresh_from_db()
        return order
    order_broker_update(account=order.account, result=current, kind="cancelled", order=order, actor=actor)
    order.refresh_from_db()
    return order


def live_order_abandon(*, order: Order, message: str, actor) -> Order:
    """A stored order that will never be sent (an earlier batch leg failed)."""
    before = order_state(order)
    if order.send_started_at is not None:
        return order  # it went out: only the broker's book may settle it
    order.status = Order.Status.CANCELLED
    order.status_message = message
    return order_save_with_event(order=order, kind="not_sent", before=before, actor=actor)
