"""Placing one order. Paper orders are checked, stored and filled in one transaction with the account row
locked. Live orders are checked and stored (PENDING) under the same lock, then sent outside any
transaction; a lost answer is resolved from the broker's order book (UNKNOWN until then), never by
sending again.
"""

import secrets
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from accounts import autoslice, placement
from accounts.account_locks import account_lock
from accounts.audit import order_event_record
from accounts.checks import (
    active_user_check,
    contract_size_check,
    currency_check,
    order_request_check,
    order_value_price,
    sell_fill_floor,
    tenant_limits_check,
    trading_enabled_check,
)
from accounts.models import Order, TradingAccount
from accounts.orders.idempotency import placed_order_for_key, request_record
from accounts.paper import paper_order_submit
from accounts.paper_buying_power import RESTING_STATUSES, paper_buying_power_check
from accounts.paper_depth import PassDepth
from accounts.paper_funds import paper_marks
from accounts.price_bands import band_quote, price_band_check
from accounts.prices import MarketDataUnavailable, price_source
from accounts.slicing import children_load, freeze_slices, parent_aggregate
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import OrderRequest
from thor.errors import ApplicationError, broker_error_body

Prices = Mapping[tuple[str, str], Decimal]

# Refusals made before the order left Thor, for a reason that passes: a spent rate budget (Thor's bucket
# refuses instead of sending what the broker would refuse), an order egress that could not be reached.
NOT_SENT_FOR_NOW = (
    BrokerErrorCode.RATE_LIMITED,
    BrokerErrorCode.ORDER_RATE_LIMITED,
    BrokerErrorCode.EGRESS_UNREACHABLE,
)


def _new_client_order_id() -> str:
    # Kite tags hold 20 characters: this id doubles as the tag that finds a timed-out order again.
    return f"thor{secrets.token_hex(8)}"


def last_prices(account: TradingAccount, requests: list[OrderRequest]) -> Prices:
    """Market prices for the orders, and for a paper account its positions (shorts are margined at the
    market) and its resting orders' instruments, read before any lock is taken: the source may be a broker.

    Only paper needs them to fill: a live order goes on without (valued at its own prices), since the
    paper source may have no session for the tenant while the user's own one is fine.
    """
    if account.mode != TradingAccount.Mode.PAPER and account.user.tenant.max_order_value is None:
        return {}  # a live order is only valued against the tenant's max order value: no price to read
    instruments = {(request.exchange, request.symbol) for request in requests}
    held: set = set()
    if account.mode == TradingAccount.Mode.PAPER:
        held = set(account.paper_positions.values_list("exchange", "symbol"))
        # Resting orders are reserved at their marks too (a short sale's margin at the mark, and what it loses
        # filled below it): without them the check would see less reserved than there is.
        resting = account.orders.filter(status__in=RESTING_STATUSES)
        instruments |= held | set(resting.values_list("exchange", "symbol"))
    try:
        quoted = price_source(tenant=account.user.tenant).prices(instruments)
    except MarketDataUnavailable:
        if account.mode == TradingAccount.Mode.PAPER:
            raise
        return {}
    # Only prices young enough to fill at: a stale table (the broker failing) is for reads, not fills. Their
    # quotes come along: a paper order fills from the book's depth (accounts.paper_depth).
    fresh = quoted.fresh()
    if account.mode != TradingAccount.Mode.PAPER:
        return fresh
    # Shorts and resting orders marked as the account's funds mark them (the stream's price, a held instrument's
    # stale one): the buying power the check finds is the one GET .../funds and the socket show.
    return fresh.with_marks(paper_marks(held=held, ordered=instruments - held, prices=quoted))


def order_create(
    *,
    account: TradingAccount,
    request: OrderRequest,
    key,
    fingerprint: str,
    sent_now: bool = False,
    parent: Order | None = None,
) -> Order:
    """The order row, PENDING. `sent_now`: a live order that goes out as soon as this commits, so the row
    says from the start that the broker may hold it (a crash after the commit is settled from the book).
    `parent`: the row is one slice of that order (accounts.slicing)."""
    return Order.objects.create(
        parent=parent,
        send_started_at=timezone.now() if sent_now else None,
        account=account,
        client_order_id=_new_client_order_id(),
        symbol=request.symbol,
        exchange=request.exchange,
        side=request.side,
        quantity=request.quantity,
        order_type=request.order_type,
        product=request.product,
        price=request.price,
        trigger_price=request.trigger_price,
        validity=request.validity,
        tag=request.tag,
        algo_id=request.algo_id,
        idempotency_key=key,
        request_fingerprint=fingerprint if key else "",
    )


def prefixed(error: ValidationError, prefix: str) -> ValidationError:
    return ValidationError({f"{prefix}{field}": messages for field, messages in error.message_dict.items()})


def pre_trade_check(
    *,
    account: TradingAccount,
    request: OrderRequest,
    prices: Prices,
    replacing: Order | None = None,
    depth: PassDepth | None = None,
    slices: list[Decimal] | None = None,
):
    """Everything an order must pass on the locked account; returns the price it is valued at.

    A paper market-type order is valued at the book it fills from (accounts.checks.order_value_price): `depth`
    is its pass's (a batch's earlier legs have taken from it), else its quote's whole book; `slices` the
    slices it fills as. A modified order fills its unfilled rest. A live order is valued without the book."""
    currency_check(account=account, request=request)
    contract_size_check(account=account, request=request)
    last_price = prices.get((request.exchange, request.symbol))
    book = None
    if account.mode == TradingAccount.Mode.PAPER:
        depth = depth or PassDepth(prices)
        book = depth.book(exchange=request.exchange, symbol=request.symbol, side=request.side)
    quantities = slices or [request.quantity - (replacing.filled_quantity if replacing else Decimal("0"))]
    price = order_value_price(request=request, last_price=last_price, book=book, quantities=quantities)
    tenant_limits_check(account=account, request=request, price=price, replacing=replacing)
    if account.mode == TradingAccount.Mode.PAPER:
        if price is None:
            raise ValidationError({"tradingsymbol": ["No market price available."]})
        paper_buying_power_check(
            account=account,
            request=request,
            price=price,
            marks=depth.marks(),
            replacing=replacing,
            slices=slices,
            sell_floor=sell_fill_floor(request=request, last_price=last_price, book=book, quantities=quantities)
            if request.side == Order.Side.SELL
            else None,
        )
    return price


def _repeat_answer(order: Order) -> Order:
    """A repeat of a key whose order is still at the broker waits: an answer without a broker id now would
    read as "placed" to a client that cannot tell. One whose sender died is answered as it is (PENDING,
    202): the reconciler settles it from the book. One settled as never placed answers 422."""
    if placement.placement_in_flight(order):
        raise ApplicationError(
            "The first request with this Idempotency-Key is still at the broker; ask again shortly.",
            code="idempotency_in_progress",
            status_code=status.HTTP_409_CONFLICT,
            retry_after=1,
        )
    if (
        order.account.mode == TradingAccount.Mode.LIVE
        and order.is_terminal
        and not order.broker_order_id
        # A sliced order settled from the book knows its slices' broker orders, not Kite's parent id.
        and not order.children.exclude(broker_order_id="").exists()
    ):
        # Settled as never placed (the book never showed it): the key's answer is that refusal, not a 201.
        raise ApplicationError(
            order.status_message or "This order was not placed.",
            code="order_not_placed",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    return children_load(order)


def _paper_slices_submit(
    *, account: TradingAccount, parent: Order, request: OrderRequest, slices: list, last_price, depth, actor
) -> Order:
    """A paper order above the freeze quantity: each slice a child order filled (or resting) as any paper
    order, then the parent's aggregate. The whole was checked for buying power; each slice fills on its own."""
    # Every slice is written before any fills: the parent's aggregate, recomputed as each one fills, never
    # reads COMPLETE over the first slices alone.
    children = [
        order_create(
            account=account, request=replace(request, quantity=quantity), key=None, fingerprint="", parent=parent
        )
        for quantity in slices
    ]
    for child in children:
        order_event_record(order=child, kind="placed", actor=actor)
    for child in children:
        paper_order_submit(account=account, order=child, last_price=last_price, depth=depth, actor=actor)
    parent.refresh_from_db()
    return parent_aggregate(parent=parent, actor=actor)


def _live_slices_store(*, account: TradingAccount, parent: Order, request: OrderRequest, slices: list, actor) -> None:
    """A live order above the freeze quantity, which the broker slices itself (accounts.autoslice): its
    slices stored beside the parent before the one call goes out, each sent with it."""
    for quantity in slices:
        child = order_create(
            account=account,
            request=replace(request, quantity=quantity),
            key=None,
            fingerprint="",
            sent_now=True,
            parent=parent,
        )
        order_event_record(order=child, kind="placed", actor=actor)


def order_place(
    *, account: TradingAccount, request: OrderRequest, idempotency_key: str | None, fingerprint: str, actor
) -> Order:
    """One order; the same Idempotency-Key and body return the order the first request made.

    A paper order above the exchange's freeze quantity is placed as slices under one parent order
    (accounts.slicing); a live one as the broker's own slices where it makes them (Kite's autoslice:
    accounts.autoslice), else refused above it."""
    sliceable = account.mode == TradingAccount.Mode.PAPER or autoslice.broker_slices(account)
    instrument = order_request_check(request=request, sliceable=sliceable, account=account)
    slices = freeze_slices(instrument=instrument, quantity=request.quantity) if sliceable else [request.quantity]
    band = band_quote(account=account, request=request)  # a broker call: read before any lock is taken
    prices = last_prices(account, [request])
    try:
        with transaction.atomic():
            locked = account_lock(
                account_id=account.pk, idempotency_key=idempotency_key, live=account.mode == TradingAccount.Mode.LIVE
            )
            active_user_check(locked.user)
            if idempotency_key and locked.key_used:
                placed = placed_order_for_key(account=locked, key=idempotency_key, fingerprint=fingerprint)
                if placed is not None:
                    return _repeat_answer(placed)
            trading_enabled_check(account=locked)
            price_band_check(account=locked, request=request, instrument=instrument, quote=band)
            # The slices share the book: a level one slice fills is gone for the next (and the check walks it so).
            depth = PassDepth(prices)
            pre_trade_check(account=locked, request=request, prices=prices, depth=depth, slices=slices)
            order = order_create(
                account=locked,
                request=request,
                key=idempotency_key,
                fingerprint=fingerprint,
                sent_now=locked.mode == TradingAccount.Mode.LIVE,
            )
            order_event_record(order=order, kind="placed", actor=actor)
            if len(slices) > 1 and locked.mode == TradingAccount.Mode.LIVE:
                _live_slices_store(account=locked, parent=order, request=request, slices=slices, actor=actor)
            if locked.mode == TradingAccount.Mode.PAPER:
                last_price = prices.get((request.exchange, request.symbol))
                if len(slices) > 1:
                    return _paper_slices_submit(
                        account=locked,
                        parent=order,
                        request=request,
                        slices=slices,
                        last_price=last_price,
                        depth=depth,
                        actor=actor,
                    )
                paper_order_submit(account=locked, order=order, last_price=last_price, depth=depth, actor=actor)
                return order
    except IntegrityError:
        # The account lock serialises placements, so the unique key is only the last line of defence; no
        # savepoint guards the INSERT (two more round trips on every order): the whole try rolls back and
        # the key's order is looked up afresh.
        if not idempotency_key:
            raise
        with transaction.atomic():
            locked = account_lock(account_id=account.pk, live=account.mode == TradingAccount.Mode.LIVE)
            placed = placed_order_for_key(account=locked, key=idempotency_key, fingerprint=fingerprint)
        if placed is None:
            raise
        return _repeat_answer(placed)
    try:
        if len(slices) > 1:
            return autoslice.live_slices_send(parent=order, actor=actor)
        return placement.live_order_send(order=order, actor=actor)
    except BrokerError as error:
        if error.code in NOT_SENT_FOR_NOW:
            # Nothing went out and the reason passes: the row stays (REJECTED, never deleted) but gives the key
            # back, so the retry its Retry-After invites, with the same key, is placed afresh.
            Order.objects.filter(pk=order.pk).update(idempotency_key=None, request_fingerprint="")
            raise
        # Refused for good: a retry with this key answers the same refusal.
        body = broker_error_body(error)
        request_record(
            account=account,
            key=idempotency_key,
            operation="place",
            fingerprint=fingerprint,
            response_status=body["status_code"],
            response_body=body,
        )
        raise
