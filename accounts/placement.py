"""Sending a live order, and settling every order whose send did not come back with a broker id.

The lifecycle of a live placement (each step written before the next can happen):

    PENDING (stored, send_started_at set: committed before the HTTP call goes out)
      -> OPEN / COMPLETE / ... (the broker named its order)          : live_order_send
      -> REJECTED (the broker refused it, for certain)               : live_order_send
      -> UNKNOWN (no answer, a 5xx, or "taken" without an id)        : live_order_send
    UNKNOWN -> the broker's order, once placement_match is certain   : live_order_settle
            -> REJECTED, when the book was read after the settle window and nothing could be it
            -> NEEDS_REVIEW, when after the window several could be it (or the broker said it took it)
    PENDING whose sender died (a crash, a kill -9) -> UNKNOWN         : orphaned_placements_settle

Nothing here sends an order twice: a lost answer is resolved from the broker's order book only. What
identifies a placement, and how long each broker may take to show it, is in README "Order lifecycle".
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter

from accounts.audit import order_save_with_event, order_state
from accounts.broker_updates import order_broker_update, placement_answer_store
from accounts.live import live_call, live_snapshots_forget, order_request_of
from accounts.models import Order
from accounts.placement_matching import Match, placement_match
from brokers.adapters.errors import BrokerError, BrokerErrorCode

logger = logging.getLogger("accounts.placement")
orders_needing_review = Counter(
    "thor_orders_needing_review_total", "Live placements the book could not settle by itself", ["broker"]
)

# A send that ended in one of these may or may not have made an order at the broker.
UNCERTAIN_ERRORS = (BrokerErrorCode.TIMEOUT, BrokerErrorCode.UNAVAILABLE, BrokerErrorCode.UNCONFIRMED)


def send_started(order: Order) -> bool:
    """Mark, committed, that the order is about to go out: from here on the broker may hold it. False when
    it is no longer PENDING (the reconciler gave up on a send that had waited too long): then it never goes."""
    started = timezone.now()
    marked = Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(
        send_started_at=started, send_ended_at=None, send_acknowledged=False, updated_at=started
    )
    order.send_started_at, order.send_ended_at, order.send_acknowledged = started, None, False
    order.updated_at = started
    return bool(marked)


def live_order_send(*, order: Order, actor) -> Order:
    """Send a stored PENDING order. Raises the BrokerError when the broker refused it for certain.

    When the answer is lost the order becomes UNKNOWN and is looked up in the book (see module doc).
    """
    if order.send_started_at is None and not send_started(order):
        order.refresh_from_db()
        return order
    account = order.account
    request = order_request_of(order)
    before = order_state(order)
    try:
        result = live_call(account, lambda adapter: adapter.place(request))
    except BrokerError as error:
        order.send_ended_at = timezone.now()
        if error.code in UNCERTAIN_ERRORS:
            return _placement_uncertain(order=order, error=error, actor=actor)
        order.status = Order.Status.REJECTED
        order.status_message = (error.broker_message or error.message)[:500]
        order_save_with_event(
            order=order, kind="rejected", before=before, actor=actor, broker_response={"code": error.code}
        )
        raise
    order.send_ended_at = timezone.now()
    # One statement when nothing else touched the order meanwhile (it forgets the live snapshots once it
    # has committed), else the locked update (see each).
    answered = placement_answer_store(order=order, result=result, actor=actor)
    if answered is not None:
        return answered
    live_snapshots_forget(account=account)
    return order_broker_update(account=account, result=result, kind="sent", order=order, actor=actor)[0]


def _settle_delay(checks: int) -> timedelta:
    # 1, 2, 4 ... seconds, at most a minute between looks.
    return timedelta(seconds=min(2**checks, 60))


def _placement_uncertain(*, order: Order, error: BrokerError, actor) -> Order:
    """Store UNKNOWN first (a crash from here on leaves a row the settle task picks up), then look."""
    before = order_state(order)
    order.status = Order.Status.UNKNOWN
    order.send_acknowledged = error.code == BrokerErrorCode.UNCONFIRMED
    order.status_message = (
        f"Placement unconfirmed: the broker did not answer ({error.code}); Thor is checking its order book."
    )
    order.settle_checks = 0
    order.settle_after = timezone.now() + _settle_delay(0)
    order_save_with_event(order=order, kind="placement_unknown", before=before, actor=actor)
    for attempt in range(settings.THOR_PLACEMENT_LOOKUPS):
        if attempt:
            time.sleep(settings.THOR_PLACEMENT_LOOKUP_INTERVAL)
        match = _book_match(order)
        if match is not None and match.result is not None:
            return _confirmed(order, match, actor=actor)
    order.refresh_from_db()
    return order


def _book_match(order: Order, *, now=None) -> Match | None:
    """What the broker's book says of the order; None when the book could not be read."""
    try:
        candidates = live_call(
            order.account,
            lambda adapter: adapter.placement_candidates(
                order_request_of(order), order.send_started_at or order.created_at
            ),
        )
    except BrokerError as error:
        logger.warning("Order book unreadable while confirming order %s: %s", order.client_order_id, error.code)
        return None
    return placement_match(order, candidates, now=now)


def _confirmed(order: Order, match: Match, *, actor=None) -> Order:
    live_snapshots_forget(account=order.account)
    return order_broker_update(
        account=order.account, result=match.result, kind="placement_confirmed", order=order, actor=actor
    )[0]


def placement_settle_window(order: Order) -> timedelta:
    """How long after it was sent an order the broker's book does not show may still appear in it."""
    return timedelta(seconds=settings.THOR_PLACEMENT_SETTLE_SECONDS[order.account.broker])


def live_order_settle(*, order: Order, now=None) -> Order:
    """Resolve an UNKNOWN (or NEEDS_REVIEW) order from the broker's order book.

    Confirmed when placement_match is certain. Once the settle window has passed with the book read:
    REJECTED when nothing could be it and the broker never said it took it, else NEEDS_REVIEW (a person
    decides; it is still looked at, slowly, and confirmed if the book later makes the choice certain).
    """
    now = now or timezone.now()
    if order.status not in (Order.Status.UNKNOWN, Order.Status.NEEDS_REVIEW):
        return order
    if order.parent_id is not None or order.children.exists():
        # A sliced order (Kite's autoslice) is settled as a whole, its slices by the parent's tag.
        from accounts.autoslice import slices_settle  # here: autoslice builds on this module

        return slices_settle(parent=order, now=now)
    match = _book_match(order, now=now)
    if match is not None and match.result is not None:
        return _confirmed(order, match)
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",)).select_related("account__connection__app").get(pk=order.pk)
        )
        if order.status not in (Order.Status.UNKNOWN, Order.Status.NEEDS_REVIEW) or order.broker_order_id:
            return order  # a postback or a poll settled it meanwhile
        before = order_state(order)
        order.settle_checks += 1
        window_closed = now >= (order.send_started_at or order.created_at) + placement_settle_window(order)
        if match is not None and window_closed and order.status == Order.Status.UNKNOWN:
            if match.possible == 0 and not order.send_acknowledged:
                order.status = Order.Status.REJECTED
                order.settle_after = None
                order.status_message = "Not placed: the broker's order book never showed it."
                return order_save_with_event(order=order, kind="placement_not_found", before=before, actor=None)
            return _needs_review(order, match, before=before, now=now)
        order.settle_after = now + _settle_delay(order.settle_checks)
        order.save(update_fields=["settle_checks", "settle_after", "updated_at"])
        return order


def _needs_review(order: Order, match: Match, *, before: dict, now) -> Order:
    if match.possible:
        reason = f"{match.possible} orders at the broker could be this one"
    else:
        reason = "the broker said it took the order, but its book never showed it"
    order.status = Order.Status.NEEDS_REVIEW
    order.status_message = f"Needs review: {reason}. Check the broker's order book before placing it again."
    order.settle_after = now + _settle_delay(16)
    logger.warning("Order %s of account %s needs review: %s", order.pk, order.account_id, reason)
    orders_needing_review.labels(broker=order.account.broker).inc()
    return order_save_with_event(order=order, kind="placement_needs_review", before=before, actor=None)


def orphaned_placements_settle(*, now=None) -> int:
    """PENDING live orders no process is sending any more (the server died mid-send): those whose send
    started become UNKNOWN and are settled like any lost answer; those never sent are REJECTED (nothing
    went out). Returns how many were picked up."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.THOR_PLACEMENT_ORPHAN_SECONDS)
    picked = 0
    # A slice is settled with its parent (accounts.autoslice), never on its own: its tag is the parent's.
    orphans = Order.objects.filter(
        status=Order.Status.PENDING,
        account__mode="live",
        broker_order_id="",
        created_at__lte=horizon,
        parent__isnull=True,
    ).values_list("pk", flat=True)
    for pk in list(orphans[:200]):
        with transaction.atomic():
            order = Order.objects.select_for_update().filter(pk=pk, status=Order.Status.PENDING).first()
            if order is None or (order.send_started_at and order.send_started_at > horizon):
                continue
            before = order_state(order)
            if order.send_started_at is None:
                order.status = Order.Status.REJECTED
                order.status_message = "Not sent: Thor stopped before sending it."
                order_save_with_event(order=order, kind="not_sent", before=before, actor=None)
            else:
                order.status = Order.Status.UNKNOWN
                order.status_message = "Placement unconfirmed: Thor stopped while sending it; checking the book."
                order.settle_checks = 0
                order.settle_after = now
                order_save_with_event(order=order, kind="placement_orphaned", before=before, actor=None)
            picked += 1
    return picked


def placement_in_flight(order: Order, *, now=None) -> bool:
    """Is a process still sending this PENDING order (a repeat of its key must wait)?"""
    now = now or timezone.now()
    started = order.send_started_at or order.created_at
    return order.status == Order.Status.PENDING and now - started < timedelta(
        seconds=settings.THOR_PLACEMENT_ORPHAN_SECONDS
    )
