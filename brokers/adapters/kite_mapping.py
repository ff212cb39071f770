"""Kite's answers in Thor's neutral terms: its exceptions as BrokerErrors, its numbers, depth and orders
(brokers.adapters.kite calls Kite; this module only reads and writes its shapes)."""

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import requests
from kiteconnect import exceptions as kite_exceptions

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import DepthLevel, OrderResult
from thor.money import to_decimal

IST = ZoneInfo("Asia/Kolkata")
KITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MODIFICATIONS_EXCEEDED = "maximum allowed order modifications exceeded"


def broker_error_of(exc: Exception) -> BrokerError:
    message = str(exc)[:300]
    if isinstance(exc, kite_exceptions.TokenException):
        return BrokerError("Kite session expired.", code=BrokerErrorCode.TOKEN_EXPIRED, permanent=True)
    if isinstance(exc, kite_exceptions.PermissionException):
        return BrokerError(
            "Kite refused the request.", code=BrokerErrorCode.PERMISSION_DENIED, permanent=True, broker_message=message
        )
    if isinstance(exc, kite_exceptions.InputException):
        return BrokerError(
            "Kite rejected the input.", code=BrokerErrorCode.INVALID_INPUT, permanent=True, broker_message=message
        )
    if isinstance(exc, kite_exceptions.OrderException):
        return BrokerError(
            "Kite rejected the order.", code=BrokerErrorCode.REJECTED, permanent=True, broker_message=message
        )
    if isinstance(exc, kite_exceptions.NetworkException) and MODIFICATIONS_EXCEEDED in message.lower():
        # Kite's answer to an order's 26th modification comes as a network error; it is final, not an outage.
        return BrokerError(
            "Kite allows no more modifications of this order: cancel it and place a new one.",
            code=BrokerErrorCode.INVALID_INPUT,
            permanent=True,
            broker_message=message,
        )
    if isinstance(exc, kite_exceptions.NetworkException) and (
        exc.code == 429 or "too many requests" in message.lower()
    ):
        return BrokerError("Kite rate limit hit.", code=BrokerErrorCode.RATE_LIMITED, retry_after=1.0)
    if isinstance(exc, requests.Timeout):
        return BrokerError("Kite did not answer in time.", code=BrokerErrorCode.TIMEOUT)
    return BrokerError("Kite is unavailable.", code=BrokerErrorCode.UNAVAILABLE, broker_message=message)


def whole_quantity(quantity: object) -> int:
    """Kite trades whole units: a fractional quantity is refused here, never truncated on the way out."""
    value = to_decimal(quantity)
    if not value.is_finite() or value != value.to_integral_value():
        raise BrokerError(
            f"Kite trades whole quantities only, not {quantity}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True
        )
    return int(value)


def kite_number(value: Decimal) -> int | str:
    """A Decimal as Kite's form fields expect it: 5 and 2.5, not 5.00 or 2.50."""
    return int(value) if value == value.to_integral_value() else format(value.normalize(), "f")


def as_aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=IST)


def optional_decimal(value: object) -> Decimal | None:
    return None if value in (None, "") else to_decimal(value)


def depth_of(levels: object) -> tuple[DepthLevel, ...]:
    """Kite's depth side (five levels, best first); the empty levels it pads a thin book with are left out."""
    if not isinstance(levels, list):
        return ()
    return tuple(
        DepthLevel(
            price=to_decimal(level.get("price")),
            quantity=int(level.get("quantity") or 0),
            orders=int(level.get("orders") or 0),
        )
        for level in levels
        if isinstance(level, dict) and level.get("price") and level.get("quantity")
    )


def as_sent(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload with its timestamps as Kite sent them: the client parses them into datetimes,
    which the JSON columns that keep an order's raw payload cannot store."""
    return {
        key: value.strftime(KITE_TIME_FORMAT) if isinstance(value, datetime) else value
        for key, value in payload.items()
    }


def order_result_of(order: Mapping[str, Any]) -> OrderResult:
    return OrderResult(
        broker_order_id=str(order["order_id"]),
        status=order.get("status") or "",
        symbol=order.get("tradingsymbol") or "",
        exchange=order.get("exchange") or "",
        side=order.get("transaction_type") or "",
        quantity=to_decimal(order.get("quantity")),
        filled_quantity=to_decimal(order.get("filled_quantity")),
        average_price=optional_decimal(order.get("average_price")),
        price=optional_decimal(order.get("price")),
        trigger_price=optional_decimal(order.get("trigger_price")),
        order_type=order.get("order_type") or "",
        product=order.get("product") or "",
        validity=order.get("validity") or "",
        tag=order.get("tag") or "",
        status_message=order.get("status_message") or "",
        placed_at=as_aware(order.get("order_timestamp")),
        raw=as_sent(order),
    )
