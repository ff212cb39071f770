"""Batches of up to 20 orders: every leg is checked before any is sent. Paper is all or nothing in one
transaction; live sends leg by leg and cancels the legs already placed when a later one fails.
"""

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts import live, placement
from accounts.account_locks import account_lock
from accounts.audit import order_event_record
from accounts.checks import order_request_check, trading_enabled_check
from accounts.market_data import Instrument
from accounts.models import Order, TradingAccount
from accounts.orders.idempotency import recorded_request, request_record
from accounts.orders.place import last_prices, order_create, pre_trade_check, prefixed
from accounts.paper import paper_order_submit
from accounts.paper_depth import PassDepth
from accounts.price_bands import band_quotes, price_band_check
from brokers.adapters.errors import BrokerError
from brokers.adapters.types import OrderRequest


@dataclass(frozen=True)
class BatchLeg:
    index: int
    outcome: str  # placed | rejected | cancelled
    order: Order
    message: str = ""


@dataclass(frozen=True)
class BatchResult:
    status: str  # placed | failed | partial
    legs: list[BatchLeg]

    @property
    def http_status(self) -> int:
        return {"placed": 201, "failed": 422, "partial": 207}[self.status]

    def as_record(self) -> dict:
        return {
            "status": self.status,
            "legs": [
                {"index": leg.index, "outcome": leg.outcome, "order_id": leg.order.pk, "message": leg.message}
                for leg in self.legs
            ],
        }


def _batch_from_record(*, account: TradingAccount, body: dict) -> BatchResult:
    orders = account.orders.in_bulk([leg["order_id"] for leg in body["legs"]])
    legs = [
        BatchLeg(index=leg["index"], outcome=leg["outcome"], order=orders[leg["order_id"]], message=leg["message"])
        for leg in body["legs"]
    ]
    return BatchResult(status=body["status"], legs=legs)


def _check_every_leg(requests: list[OrderRequest], account: TradingAccount) -> list[Instrument]:
    errors = {}
    instruments = []
    for index, request in enumerate(requests):
        try:
            instruments.append(order_request_check(request=request, account=account))
        except ValidationError as error:
            errors.update(prefixed(error, f"orders.{index}.").message_dict)
    if errors:
        raise ValidationError(errors)
    return instruments


def order_batch_place(
    *, account: TradingAccount, requests: list[OrderRequest], idempotency_key: str | None, fingerprint: str, actor
) -> BatchResult:
    """Every leg is checked before any is sent. Paper: one transaction. Live: placed legs are cancelled
    when a later leg fails, and each leg reports its outcome.
    """
    instruments = _check_every_leg(requests, account)
    bands = band_quotes(account=account, requests=requests)  # one broker call: before the lock
    prices = last_prices(account, requests)
    with transaction.atomic():
        locked = account_lock(account_id=account.pk, live=account.mode == TradingAccount.Mode.LIVE)
        if idempotency_key:
            record = recorded_request(account=locked, key=idempotency_key, fingerprint=fingerprint)
            if record is not None:
                return _batch_from_record(account=locked, body=record.response_body)
        trading_enabled_check(account=locked)
        orders = []
        depth = PassDepth(prices)  # legs on one instrument share its book
        for index, request in enumerate(requests):
            try:
                price_band_check(account=locked, request=request, instrument=instruments[index], quote=bands[index])
                # Valued at what the earlier legs left of the book: the book this leg fills from.
                pre_trade_check(account=locked, request=request, prices=prices, depth=depth)
            except ValidationError as error:
                raise prefixed(error, f"orders.{index}.") from None
            order = order_create(account=locked, request=request, key=None, fingerprint="")
            order_event_record(order=order, kind="placed", actor=actor)
            if locked.mode == TradingAccount.Mode.PAPER:
                paper_order_submit(
                    account=locked,
                    order=order,
                    last_price=prices.get((request.exchange, request.symbol)),
                    depth=depth,
                    actor=actor,
                )
                if order.status == Order.Status.REJECTED:
                    raise ValidationError({f"orders.{index}.non_field_errors": [order.status_message]})
            orders.append(order)
        if locked.mode == TradingAccount.Mode.PAPER:
            result = BatchResult(
                status="placed", legs=[BatchLeg(index=i, outcome="placed", order=o) for i, o in enumerate(orders)]
            )
            return _answered(account=locked, key=idempotency_key, fingerprint=fingerprint, result=result)
        request_record(account=locked, key=idempotency_key, operation="batch", fingerprint=fingerprint)
    result = _live_batch_send(orders=orders, actor=actor)
    return _answered(account=account, key=idempotency_key, fingerprint=fingerprint, result=result)


def _answered(*, account, key, fingerprint, result: BatchResult) -> BatchResult:
    request_record(
        account=account,
        key=key,
        operation="batch",
        fingerprint=fingerprint,
        response_status=result.http_status,
        response_body=result.as_record(),
    )
    return result


def _live_batch_send(*, orders: list[Order], actor) -> BatchResult:
    placed: list[Order] = []
    for index, order in enumerate(orders):
        try:
            placed.append(placement.live_order_send(order=order, actor=actor))
        except BrokerError as error:
            return _live_batch_unwind(orders=orders, placed=placed, failed_index=index, error=error, actor=actor)
    return BatchResult(
        status="placed", legs=[BatchLeg(index=i, outcome="placed", order=o) for i, o in enumerate(placed)]
    )


def _live_batch_unwind(*, orders, placed, failed_index, error: BrokerError, actor) -> BatchResult:
    """A leg failed: cancel the legs already at the broker and never send the rest."""
    legs = []
    for index, order in enumerate(placed):
        legs.append(_leg_cancelled(index=index, order=order, actor=actor))
    failed = orders[failed_index]
    failed.refresh_from_db()
    legs.append(
        BatchLeg(index=failed_index, outcome="rejected", order=failed, message=failed.status_message or error.message)
    )
    for index in range(failed_index + 1, len(orders)):
        order = orders[index]
        live.live_order_abandon(order=order, message=f"Not sent: leg {failed_index} failed.", actor=actor)
        legs.append(BatchLeg(index=index, outcome="cancelled", order=order, message=order.status_message))
    still_placed = any(leg.outcome == "placed" for leg in legs)
    return BatchResult(status="partial" if still_placed else "failed", legs=legs)


def _leg_cancelled(*, index: int, order: Order, actor) -> BatchLeg:
    """A placed leg, cancelled because a later one failed: "cancelled" only on the broker's word. One whose
    cancel the broker has not confirmed, or whose placement is itself unconfirmed, is still "placed"."""
    if not order.broker_order_id:
        return BatchLeg(
            index=index,
            outcome="placed",
            order=order,
            message="Not cancelled: its placement is unconfirmed; cancel it once it settles.",
        )
    try:
        order = live.live_order_cancel(order=order, actor=actor)
    except BrokerError as cancel_error:
        return BatchLeg(index=index, outcome="placed", order=order, message=f"Cancel failed: {cancel_error.message}")
    if order.status != Order.Status.CANCELLED:
        return BatchLeg(
            index=index,
            outcome="placed",
            order=order,
            message=f"Cancel sent: a later leg failed; the broker still shows it {order.status}.",
        )
    return BatchLeg(index=index, outcome="cancelled", order=order, message="Cancelled: a later leg failed.")
