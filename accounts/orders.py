"""Order writes for every account: place, modify, cancel and batches, with idempotency.

Paper orders are checked, stored and filled in one transaction with the account row locked. Live
orders are checked and stored (PENDING) under the same lock, then sent to the broker outside any
transaction; a timeout is resolved by reading the broker's order book, never by sending again.
"""

import secrets
from dataclasses import dataclass, replace
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework import status

from accounts import live
from accounts.audit import order_event_record, order_state
from accounts.checks import (
    OPEN_STATUSES,
    estimated_price,
    order_request_check,
    tenant_limits_check,
    trading_enabled_check,
)
from accounts.models import IdempotentRequest, Order, TradingAccount
from accounts.paper import (
    account_lock,
    market_fill_price,
    paper_buying_power_check,
    paper_order_cancel,
    paper_order_submit,
)
from accounts.prices import MarketDataUnavailable, price_source
from brokers.adapters.errors import BrokerError
from brokers.adapters.types import OrderRequest
from thor.errors import ApplicationError, broker_error_body

MODIFIABLE_FIELDS = ("quantity", "price", "trigger_price", "order_type", "validity")


def _new_client_order_id() -> str:
    # Kite tags hold 20 characters: this id doubles as the tag that finds a timed-out order again.
    return f"thor{secrets.token_hex(8)}"


def _last_prices(account: TradingAccount, requests: list[OrderRequest]) -> dict[tuple[str, str], Decimal]:
    """Market prices for the orders, read before any lock is taken (the source may be a broker).

    Only paper needs them to fill: a live order goes on without (valued at its own prices), since the
    paper source may have no session for the tenant while the user's own one is fine.
    """
    try:
        return price_source(tenant=account.user.tenant).prices(
            {(request.exchange, request.symbol) for request in requests}
        )
    except MarketDataUnavailable:
        if account.mode == TradingAccount.Mode.PAPER:
            raise
        return {}


def _valuation_price(*, account: TradingAccount, request: OrderRequest, last_price: Decimal | None):
    if request.order_type == "MARKET" and last_price is not None and account.mode == TradingAccount.Mode.PAPER:
        return market_fill_price(
            last_price=last_price, side=request.side, exchange=request.exchange, symbol=request.symbol
        )
    return estimated_price(request=request, last_price=last_price)


def _key_reused() -> ApplicationError:
    return ApplicationError(
        "This Idempotency-Key was already used with a different request.",
        code="idempotency_key_reused",
        status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
    )


def _placed_order_for_key(*, account: TradingAccount, key: str, fingerprint: str) -> Order | None:
    """The order this key placed, or None; raises the first answer again when the broker refused it."""
    order = account.orders.filter(idempotency_key=key).first()
    if order is None:
        if account.idempotent_requests.filter(key=key).exists():
            raise _key_reused()
        return None
    if order.request_fingerprint != fingerprint:
        raise _key_reused()
    refused = account.idempotent_requests.filter(key=key).first()
    if refused is not None:
        body = refused.response_body
        raise ApplicationError(body["detail"], code=body["code"], status_code=refused.response_status)
    return order


def _recorded_request(*, account: TradingAccount, key: str, fingerprint: str) -> IdempotentRequest | None:
    record = account.idempotent_requests.filter(key=key).first()
    if record is None:
        if account.orders.filter(idempotency_key=key).exists():
            raise _key_reused()
        return None
    if record.fingerprint != fingerprint:
        raise _key_reused()
    if record.response_status is None:
        raise ApplicationError(
            "A request with this Idempotency-Key is still being processed.",
            code="idempotent_request_in_progress",
            status_code=status.HTTP_409_CONFLICT,
        )
    return record


def _check_paper_affordable(*, account: TradingAccount, order: Order, price: Decimal | None, field_prefix: str = ""):
    if price is None:
        raise ValidationError({f"{field_prefix}tradingsymbol": ["No market price available."]})
    try:
        paper_buying_power_check(account=account, order=order, estimated_price=price)
    except ValidationError as error:
        raise ValidationError(
            {f"{field_prefix}{field}": messages for field, messages in error.message_dict.items()}
        ) from None


def _order_create(*, account: TradingAccount, request: OrderRequest, user_tag: str, key, fingerprint: str) -> Order:
    return Order.objects.create(
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
        tag=user_tag,
        idempotency_key=key,
        request_fingerprint=fingerprint if key else "",
    )


def order_place(
    *, account: TradingAccount, request: OrderRequest, idempotency_key: str | None, fingerprint: str, actor
) -> Order:
    """One order; the same Idempotency-Key and body return the order the first request made."""
    order_request_check(request=request)
    last_price = _last_prices(account, [request]).get((request.exchange, request.symbol))
    with transaction.atomic():
        locked = account_lock(account_id=account.pk)
        if idempotency_key:
            placed = _placed_order_for_key(account=locked, key=idempotency_key, fingerprint=fingerprint)
            if placed is not None:
                return placed
        trading_enabled_check(account=locked)
        price = _valuation_price(account=locked, request=request, last_price=last_price)
        tenant_limits_check(account=locked, request=request, price=price)
        try:
            with transaction.atomic():
                order = _order_create(
                    account=locked, request=request, user_tag=request.tag, key=idempotency_key, fingerprint=fingerprint
                )
        except IntegrityError:
            # The account lock serialises placements; the unique key is the last line of defence.
            return _placed_order_for_key(account=locked, key=idempotency_key, fingerprint=fingerprint)
        order_event_record(order=order, kind="placed", actor=actor)
        if locked.mode == TradingAccount.Mode.PAPER:
            _check_paper_affordable(account=locked, order=order, price=price)
            paper_order_submit(account=locked, order=order, last_price=last_price, actor=actor)
            return order
    try:
        return live.live_order_send(order=order, actor=actor)
    except BrokerError as error:
        # Refused for good: a retry with this key answers the same. An unconfirmed placement (still
        # PENDING) is not stored: a retry shows the order as the next sync leaves it.
        if order.status == Order.Status.REJECTED:
            body = broker_error_body(error)
            _record_request(
                account=account,
                key=idempotency_key,
                operation="place",
                fingerprint=fingerprint,
                response_status=body["status_code"],
                response_body=body,
            )
        raise


def _open_order_locked(*, account: TradingAccount, order_id: int) -> Order:
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


def _record_request(*, account, key, operation, fingerprint, response_status=None, response_body=None):
    if key:
        IdempotentRequest.objects.update_or_create(
            account=account,
            key=key,
            defaults={
                "operation": operation,
                "fingerprint": fingerprint,
                "response_status": response_status,
                "response_body": response_body or {},
            },
        )


def order_modify(
    *, account: TradingAccount, order_id: int, changes: dict, idempotency_key: str | None, fingerprint: str, actor
) -> Order:
    """Change an open order's quantity, prices, type or validity (checked like a new order)."""
    with transaction.atomic():
        locked = account_lock(account_id=account.pk)
        replayed = _replayed_order(account=locked, key=idempotency_key, fingerprint=fingerprint)
        if replayed is not None:
            return replayed
        order = _open_order_locked(account=locked, order_id=order_id)
        trading_enabled_check(account=locked)
        request = replace(
            live.order_request_of(order), **{field: changes[field] for field in MODIFIABLE_FIELDS if field in changes}
        )
        order_request_check(request=request)
    # Prices may come from a broker: never read them with the row locked.
    last_price = _last_prices(account, [request]).get((request.exchange, request.symbol))
    with transaction.atomic():
        locked = account_lock(account_id=account.pk)
        order = _open_order_locked(account=locked, order_id=order_id)
        price = _valuation_price(account=locked, request=request, last_price=last_price)
        tenant_limits_check(account=locked, request=request, price=price, replacing=order)
        if locked.mode == TradingAccount.Mode.LIVE:
            _record_request(account=locked, key=idempotency_key, operation="modify", fingerprint=fingerprint)
        else:
            before = order_state(order)
            for field in MODIFIABLE_FIELDS:
                setattr(order, field, getattr(request, field))
            _check_paper_affordable(account=locked, order=order, price=price)
            order.save()
            order_event_record(order=order, kind="modified", before=before, actor=actor)
            paper_order_submit(account=locked, order=order, last_price=last_price, actor=actor)
            _record_request(
                account=locked,
                key=idempotency_key,
                operation="modify",
                fingerprint=fingerprint,
                response_status=200,
                response_body={"order_id": order.pk},
            )
            return order
    return _live_change_recorded(
        account=account,
        key=idempotency_key,
        operation="modify",
        fingerprint=fingerprint,
        change=lambda: live.live_order_modify(order=order, request=request, actor=actor),
    )


def _live_change_recorded(*, account, key, operation, fingerprint, change) -> Order:
    """Run a live modify or cancel; its Idempotency-Key answers with the result, or is freed on failure."""
    try:
        order = change()
    except BrokerError:
        _forget_request(account=account, key=key)
        raise
    _record_request(
        account=account,
        key=key,
        operation=operation,
        fingerprint=fingerprint,
        response_status=200,
        response_body={"order_id": order.pk},
    )
    return order


def _replayed_order(*, account, key, fingerprint) -> Order | None:
    """The order a modify or cancel with this Idempotency-Key already answered with, if any."""
    record = _recorded_request(account=account, key=key, fingerprint=fingerprint) if key else None
    return None if record is None else account.orders.get(pk=record.response_body["order_id"])


def _forget_request(*, account, key):
    """A live call that failed changed nothing at the broker: the key may be used again."""
    if key:
        IdempotentRequest.objects.filter(account=account, key=key, response_status__isnull=True).delete()


def order_cancel(
    *, account: TradingAccount, order_id: int, idempotency_key: str | None, fingerprint: str, actor
) -> Order:
    with transaction.atomic():
        locked = account_lock(account_id=account.pk)
        replayed = _replayed_order(account=locked, key=idempotency_key, fingerprint=fingerprint)
        if replayed is not None:
            return replayed
        order = _open_order_locked(account=locked, order_id=order_id)
        if locked.mode == TradingAccount.Mode.PAPER:
            paper_order_cancel(order=order, actor=actor)
            _record_request(
                account=locked,
                key=idempotency_key,
                operation="cancel",
                fingerprint=fingerprint,
                response_status=200,
                response_body={"order_id": order.pk},
            )
            return order
        _record_request(account=locked, key=idempotency_key, operation="cancel", fingerprint=fingerprint)
    return _live_change_recorded(
        account=account,
        key=idempotency_key,
        operation="cancel",
        fingerprint=fingerprint,
        change=lambda: live.live_order_cancel(order=order, actor=actor),
    )


# --- Batches -------------------------------------------------------------------------------------


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


def _check_every_leg(requests: list[OrderRequest]) -> None:
    errors = {}
    for index, request in enumerate(requests):
        try:
            order_request_check(request=request)
        except ValidationError as error:
            errors.update({f"orders.{index}.{field}": messages for field, messages in error.message_dict.items()})
    if errors:
        raise ValidationError(errors)


def order_batch_place(
    *, account: TradingAccount, requests: list[OrderRequest], idempotency_key: str | None, fingerprint: str, actor
) -> BatchResult:
    """Every leg is checked before any is sent. Paper: one transaction. Live: placed legs are cancelled
    when a later leg fails, and each leg reports its outcome.
    """
    _check_every_leg(requests)
    prices = _last_prices(account, requests)
    with transaction.atomic():
        locked = account_lock(account_id=account.pk)
        if idempotency_key:
            record = _recorded_request(account=locked, key=idempotency_key, fingerprint=fingerprint)
            if record is not None:
                return _batch_from_record(account=locked, body=record.response_body)
        trading_enabled_check(account=locked)
        orders = []
        for index, request in enumerate(requests):
            last_price = prices.get((request.exchange, request.symbol))
            price = _valuation_price(account=locked, request=request, last_price=last_price)
            try:
                tenant_limits_check(account=locked, request=request, price=price)
            except ValidationError as error:
                raise ValidationError(
                    {f"orders.{index}.{field}": messages for field, messages in error.message_dict.items()}
                ) from None
            order = _order_create(account=locked, request=request, user_tag=request.tag, key=None, fingerprint="")
            order_event_record(order=order, kind="placed", actor=actor)
            if locked.mode == TradingAccount.Mode.PAPER:
                _check_paper_affordable(account=locked, order=order, price=price, field_prefix=f"orders.{index}.")
                paper_order_submit(account=locked, order=order, last_price=last_price, actor=actor)
                if order.status == Order.Status.REJECTED:
                    raise ValidationError({f"orders.{index}.non_field_errors": [order.status_message]})
            orders.append(order)
        if locked.mode == TradingAccount.Mode.PAPER:
            result = BatchResult(
                status="placed", legs=[BatchLeg(index=i, outcome="placed", order=o) for i, o in enumerate(orders)]
            )
            _record_request(
                account=locked,
                key=idempotency_key,
                operation="batch",
                fingerprint=fingerprint,
                response_status=result.http_status,
                response_body=result.as_record(),
            )
            return result
        _record_request(account=locked, key=idempotency_key, operation="batch", fingerprint=fingerprint)
    result = _live_batch_send(orders=orders, actor=actor)
    _record_request(
        account=account,
        key=idempotency_key,
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
            placed.append(live.live_order_send(order=order, actor=actor))
        except BrokerError as error:
            return _live_batch_unwind(orders=orders, placed=placed, failed_index=index, error=error, actor=actor)
    return BatchResult(
        status="placed", legs=[BatchLeg(index=i, outcome="placed", order=o) for i, o in enumerate(placed)]
    )


def _live_batch_unwind(*, orders, placed, failed_index, error: BrokerError, actor) -> BatchResult:
    """A leg failed: cancel the legs already at the broker and never send the rest."""
    legs = []
    for index, order in enumerate(placed):
        try:
            live.live_order_cancel(order=order, actor=actor)
            legs.append(
                BatchLeg(index=index, outcome="cancelled", order=order, message="Cancelled: a later leg failed.")
            )
        except BrokerError as cancel_error:
            legs.append(
                BatchLeg(index=index, outcome="placed", order=order, message=f"Cancel failed: {cancel_error.message}")
            )
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
