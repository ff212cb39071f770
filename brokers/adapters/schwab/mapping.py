"""Between Thor's neutral types and Schwab's JSON: order terms and statuses, the order payload Schwab
takes, the orders and quotes it answers, and the conversions every mapping shares (its accounts, balances and
positions: .portfolio).

Pure functions: nothing here calls Schwab.
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import (
    OrderRequest,
    OrderResult,
    Quote,
)
from thor.money import PRICE_STEP, ROUNDING, price, quantity, to_decimal

SCHWAB_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"

ORDER_TYPES = {"MARKET": "MARKET", "LIMIT": "LIMIT", "SL": "STOP_LIMIT", "SL-M": "STOP"}
UNIFIED_ORDER_TYPES = {schwab: unified for unified, schwab in ORDER_TYPES.items()}
DURATIONS = {"DAY": "DAY", "GTC": "GOOD_TILL_CANCEL"}
UNIFIED_VALIDITIES = {schwab: unified for unified, schwab in DURATIONS.items()}
INSTRUCTIONS = {"BUY": "BUY", "SELL": "SELL"}
UNIFIED_SIDES = {"BUY": "BUY", "BUY_TO_COVER": "BUY", "SELL": "SELL", "SELL_SHORT": "SELL"}
# Schwab's order statuses in Thor's terms; anything not listed is not acknowledged yet (PENDING).
UNIFIED_STATUSES = {
    "FILLED": "COMPLETE",
    "CANCELED": "CANCELLED",
    "REPLACED": "CANCELLED",
    "REJECTED": "REJECTED",
    "EXPIRED": "EXPIRED",
    "WORKING": "OPEN",
    "QUEUED": "OPEN",
    "ACCEPTED": "OPEN",
    "PENDING_ACTIVATION": "OPEN",
    "PENDING_CANCEL": "OPEN",
    "PENDING_REPLACE": "OPEN",
    "PENDING_RECALL": "OPEN",
    "AWAITING_MANUAL_REVIEW": "OPEN",
    "AWAITING_STOP_CONDITION": "TRIGGER PENDING",
}
STOP_ORDER_TYPES = ("STOP", "STOP_LIMIT")


# --- conversions ------------------------------------------------------------------------------


def optional_decimal(value: object) -> Decimal | None:
    return None if value in (None, "") else to_decimal(value)


def optional_price(value: object) -> Decimal | None:
    return None if value in (None, "") else price(value)


def computed_price(amount: Decimal) -> Decimal:
    """A price Thor works out itself (so never missing) on thor.money's price step."""
    return amount.quantize(PRICE_STEP, rounding=ROUNDING)


def shares(value: object) -> Decimal:
    return Decimal(quantity(value))


def schwab_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(SCHWAB_TIME_FORMAT)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    # Schwab writes offsets as +0000; fromisoformat wants +00:00.
    if re.search(r"[+-]\d{4}$", text):
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _whole_quantity(quantity: object) -> int:
    value = to_decimal(quantity)
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise BrokerError(
            f"Schwab orders take whole share quantities, not {quantity}.",
            code=BrokerErrorCode.INVALID_INPUT,
            permanent=True,
        )
    return int(value)


def _price_number(value: object) -> float:
    """A Decimal price as the JSON number Schwab expects; 4-decimal prices survive float exactly."""
    amount = to_decimal(value)
    if not amount.is_finite() or amount <= 0:
        raise BrokerError(f"Invalid price {value}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
    return float(amount)


def symbol_of(reference: str) -> str:
    """ "NASDAQ:AAPL" or "AAPL" -> "AAPL": Schwab routes by symbol, the exchange is Thor's label."""
    return reference.rpartition(":")[2].strip().upper()


def _average_fill_price(order: Mapping[str, Any]) -> Decimal | None:
    quantity = Decimal("0")
    cost = Decimal("0")
    for activity in order.get("orderActivityCollection") or []:
        for leg in activity.get("executionLegs") or []:
            leg_quantity = to_decimal(leg.get("quantity"))
            quantity += leg_quantity
            cost += leg_quantity * to_decimal(leg.get("price"))
    return (cost / quantity) if quantity else None


def _unified_status(order: Mapping[str, Any]) -> str:
    status = order.get("status") or ""
    if status == "WORKING" and order.get("orderType") in STOP_ORDER_TYPES and not order.get("filledQuantity"):
        return "TRIGGER PENDING"
    return UNIFIED_STATUSES.get(status, "PENDING")


def order_result(order: Mapping[str, Any]) -> OrderResult:
    legs = order.get("orderLegCollection") or [{}]
    leg = legs[0] or {}
    instrument = leg.get("instrument") or {}
    status = order.get("status") or ""
    message = order.get("statusDescription") or ""
    if status == "REPLACED" and not message:
        message = "Replaced by a new order."
    return OrderResult(
        broker_order_id=str(order.get("orderId") or ""),
        status=_unified_status(order),
        symbol=instrument.get("symbol") or "",
        exchange="",
        side=UNIFIED_SIDES.get(leg.get("instruction") or "", leg.get("instruction") or ""),
        quantity=shares(order.get("quantity") or leg.get("quantity")),
        filled_quantity=shares(order.get("filledQuantity")),
        average_price=optional_price(_average_fill_price(order)),
        price=optional_price(order.get("price")),
        trigger_price=optional_price(order.get("stopPrice")),
        order_type=UNIFIED_ORDER_TYPES.get(order.get("orderType") or "", order.get("orderType") or ""),
        product="",
        validity=UNIFIED_VALIDITIES.get(order.get("duration") or "", order.get("duration") or ""),
        tag="",
        status_message=message,
        placed_at=_parse_time(order.get("enteredTime")),
        raw=dict(order),
    )


def order_payload(
    *,
    symbol: str,
    side: str,
    quantity: Decimal | int,
    order_type: str,
    validity: str = "DAY",
    price: Decimal | None = None,
    trigger_price: Decimal | None = None,
) -> dict[str, Any]:
    """A single-leg equity order in Schwab's terms, validated the way Schwab would refuse it."""
    if side not in INSTRUCTIONS:
        raise BrokerError(
            f"Schwab orders are BUY or SELL, not {side!r}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True
        )
    if order_type not in ORDER_TYPES:
        raise BrokerError(f"Unknown order type {order_type!r}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
    if validity not in DURATIONS:
        raise BrokerError(
            f"Schwab orders are DAY or GTC, not {validity!r}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True
        )
    ticker = symbol_of(symbol)
    if not ticker or not re.fullmatch(r"[A-Z0-9./-]{1,12}", ticker):
        raise BrokerError(f"Invalid symbol {symbol!r}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
    schwab_type = ORDER_TYPES[order_type]
    payload: dict[str, Any] = {
        "session": "NORMAL",
        "duration": DURATIONS[validity],
        "orderType": schwab_type,
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [
            {
                "instruction": INSTRUCTIONS[side],
                "quantity": _whole_quantity(quantity),
                "instrument": {"symbol": ticker, "assetType": "EQUITY"},
            }
        ],
    }
    if schwab_type in ("LIMIT", "STOP_LIMIT"):
        if price is None:
            raise BrokerError("A limit order needs a price.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
        payload["price"] = _price_number(price)
    if schwab_type in STOP_ORDER_TYPES:
        if trigger_price is None:
            raise BrokerError("A stop order needs a trigger price.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
        payload["stopPrice"] = _price_number(trigger_price)
    return payload


def matches_placement(order: Mapping[str, Any], payload: Mapping[str, Any], since: datetime) -> bool:
    """Is this order in the book the one `payload` placed (no later than `since`)?"""
    entered = _parse_time(order.get("enteredTime"))
    if entered is None or entered < since:
        return False
    legs = order.get("orderLegCollection") or []
    if len(legs) != 1:
        return False
    leg, wanted = legs[0], payload["orderLegCollection"][0]
    if (leg.get("instrument") or {}).get("symbol", "").upper() != wanted["instrument"]["symbol"]:
        return False
    if leg.get("instruction") != wanted["instruction"] or order.get("orderType") != payload["orderType"]:
        return False
    if to_decimal(order.get("quantity") or leg.get("quantity")) != to_decimal(wanted["quantity"]):
        return False
    for name in ("price", "stopPrice"):
        if name in payload and optional_decimal(order.get(name)) != to_decimal(payload[name]):
            return False
    return True


def request_payload(order: OrderRequest) -> dict[str, Any]:
    return order_payload(
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        order_type=order.order_type,
        validity=order.validity or "DAY",
        price=order.price,
        trigger_price=order.trigger_price,
    )


def checked_order_id(broker_order_id: str) -> str:
    text = str(broker_order_id).strip()
    if not text.isdigit() or len(text) > 20:
        raise BrokerError(
            f"Invalid Schwab order id {broker_order_id!r}.", code=BrokerErrorCode.NOT_FOUND, permanent=True
        )
    return text


def lifetime(seconds: Any, default: timedelta) -> timedelta:
    """A token's lifetime from the token endpoint's `expires_in`, else the documented default."""
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        return default
    return timedelta(seconds=value) if value > 0 else default


# --- market data ------------------------------------------------------------------------------


def quotes_of(
    data: Mapping[str, Any] | None, symbols: list[str], references: Mapping[str, list[str]]
) -> dict[str, Quote]:
    """The quotes of `symbols` in one `/marketdata/v1/quotes` answer, each under every reference given for
    its symbol (`references`); a symbol Schwab did not quote, or quoted with no last price, is left out."""
    quotes: dict[str, Quote] = {}
    for symbol in symbols:
        item = (data or {}).get(symbol)
        if not isinstance(item, Mapping) or not isinstance(item.get("quote"), Mapping):
            continue
        quote = item["quote"]
        # Every reader of a quote prices with its last price (a paper fill, an order's value): a quote
        # without one is no quote, as a consumer already reads a symbol that is left out.
        last_price = optional_price(quote.get("lastPrice"))
        if last_price is None:
            continue
        for reference in references[symbol]:
            exchange = reference.rpartition(":")[0]
            quotes[reference] = Quote(
                symbol=symbol,
                exchange=exchange,
                last_price=last_price,
                open=optional_price(quote.get("openPrice")),
                high=optional_price(quote.get("highPrice")),
                low=optional_price(quote.get("lowPrice")),
                close=optional_price(quote.get("closePrice")),
                volume=quote.get("totalVolume"),
                timestamp=_epoch_millis(quote.get("tradeTime") or quote.get("quoteTime")),
                raw=dict(item),
            )
    return quotes


def _epoch_millis(value: object) -> datetime | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)
