"""Order validation and the bookkeeping a fill does on Kite positions and margins."""

import uuid
from collections.abc import Mapping
from typing import Any

from .kite_models import input_error
from .market import Instrument, load_json_fixture

ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
# As on Kite since April 2026: these order types are refused without `market_protection`.
MARKET_PROTECTED_ORDER_TYPES = ("MARKET", "SL-M")
MARKET_PROTECTION_RULE = "-1 for automatic protection, or a percentage above 0 up to 100"
VALIDITIES = ("DAY", "IOC", "TTL")
COMMODITY_EXCHANGES = ("MCX",)


def require_choice(params: Mapping[str, str], name: str, choices: tuple[str, ...]) -> None:
    if params.get(name) not in choices:
        raise input_error(f"Invalid `{name}`.")


def order_terms(params: Mapping[str, str], defaults: Mapping) -> dict:
    """The modifiable terms of an order (type, quantity, prices, validity), validated."""
    terms: dict[str, Any] = {
        "order_type": params.get("order_type") or defaults.get("order_type"),
        "quantity": _positive_int(params.get("quantity") or defaults.get("quantity"), "quantity"),
        "price": _price(params.get("price"), defaults.get("price", 0), "price"),
        "trigger_price": _price(params.get("trigger_price"), defaults.get("trigger_price", 0), "trigger_price"),
        "validity": params.get("validity") or defaults.get("validity"),
    }
    if params.get("disclosed_quantity"):
        terms["disclosed_quantity"] = _non_negative_int(params["disclosed_quantity"], "disclosed_quantity")
    market_protection = _market_protection(params.get("market_protection"), defaults.get("market_protection"))
    if market_protection is not None:
        terms["market_protection"] = market_protection
    if terms["order_type"] not in ORDER_TYPES:
        raise input_error("Invalid `order_type`.")
    if terms["order_type"] in MARKET_PROTECTED_ORDER_TYPES and market_protection is None:
        raise input_error(
            f"`market_protection` is required for {terms['order_type']} orders: {MARKET_PROTECTION_RULE}."
        )
    if terms["validity"] not in VALIDITIES:
        raise input_error("Invalid `validity`.")
    if terms["order_type"] in ("LIMIT", "SL") and terms["price"] <= 0:
        raise input_error("Missing or invalid `price` for a limit order.")
    if terms["order_type"] in ("SL", "SL-M") and terms["trigger_price"] <= 0:
        raise input_error("Missing or invalid `trigger_price` for a stop-loss order.")
    if terms["order_type"] in ("MARKET", "SL-M"):
        terms["price"] = 0
    if terms["order_type"] in ("MARKET", "LIMIT"):
        terms["trigger_price"] = 0
    return terms


def _positive_int(raw, name: str) -> int:
    value = _non_negative_int(raw, name)
    if value == 0:
        raise input_error(f"Invalid `{name}`.")
    return value


def _non_negative_int(raw, name: str) -> int:
    text = str(raw).strip()
    if not text.isdigit():
        raise input_error(f"Invalid `{name}`.")
    return int(text)


def _price(raw: str | None, default: float, name: str) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise input_error(f"Invalid `{name}`.") from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise input_error(f"Invalid `{name}`.")
    return value


def _market_protection(raw: str | None, default) -> int | float | None:
    """The protection asked for, else the order's own; None when there is none (an order placed without
    it shows 0 in Kite's order book, so 0 in `default` means none)."""
    if raw is None or raw == "":
        return default or None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value == -1 or 0 < value <= 100):
        raise input_error(f"Invalid `market_protection`: {MARKET_PROTECTION_RULE}.")
    return int(value) if value.is_integer() else value


def price_band_require(terms: Mapping, band: tuple[float, float]) -> None:
    """A LIMIT or SL order priced outside the instrument's band is refused before it is booked, as Kite's
    checks refuse it: with its circuit-limit wording even for an option's price protection range (the
    message traders report as misleading)."""
    if terms["order_type"] not in ("LIMIT", "SL"):
        return
    low, high = band
    if terms["price"] < low:
        raise input_error(
            f"Your order price is lower than the current lower circuit limit of {low:.2f}. "
            "Place an order within the daily range."
        )
    if terms["price"] > high:
        raise input_error(
            f"Your order price is higher than the current upper circuit limit of {high:.2f}. "
            "Place an order within the daily range."
        )


def margin_segment(exchange: str) -> str:
    return "commodity" if exchange in COMMODITY_EXCHANGES else "equity"


def find_or_open_position(positions: list[dict], order: dict, *, multiplier: int) -> dict:
    for position in positions:
        if (position["exchange"], position["tradingsymbol"], position["product"]) == (
            order["exchange"],
            order["tradingsymbol"],
            order["product"],
        ):
            return position
    position = dict.fromkeys(_POSITION_KEYS, 0)
    position.update(
        tradingsymbol=order["tradingsymbol"],
        exchange=order["exchange"],
        instrument_token=order["instrument_token"],
        product=order["product"],
        multiplier=multiplier,
    )
    positions.append(position)
    return position


# New positions take the Kite mock's shape, with every number starting at zero.
_POSITION_KEYS = tuple(load_json_fixture("positions.json")["data"]["net"][0])


def add_fill_to_position(position: dict, signed_quantity: int, price: float) -> None:
    side = "buy" if signed_quantity > 0 else "sell"
    quantity = abs(signed_quantity)
    value = quantity * price * position["multiplier"]
    for prefix in (f"{side}_", f"day_{side}_"):
        position[f"{prefix}quantity"] += quantity
        position[f"{prefix}value"] = round(position[f"{prefix}value"] + value, 2)
        position[f"{prefix}price"] = round(
            position[f"{prefix}value"] / (position[f"{prefix}quantity"] * position["multiplier"]), 4
        )
    position[f"{side}_m2m"] = position[f"{side}_value"]
    position["quantity"] = position["buy_quantity"] - position["sell_quantity"]
    if position["quantity"] > 0:
        position["average_price"] = position["buy_price"]
    elif position["quantity"] < 0:
        position["average_price"] = position["sell_price"]
    else:
        position["average_price"] = 0
    position["value"] = round(position["sell_value"] - position["buy_value"], 2)


def mark_to_market(position: dict, last_price: float) -> None:
    position["last_price"] = last_price
    pnl = round(position["value"] + position["quantity"] * last_price * position["multiplier"], 2)
    position.update(pnl=pnl, m2m=pnl, unrealised=pnl)


def charge_margins(segment: dict, signed_value: float) -> None:
    """A buy uses cash and a sell frees it; Kite shows that in `net` and `live_balance`."""
    segment["net"] = round(segment["net"] - signed_value, 2)
    segment["available"]["live_balance"] = round(segment["available"]["live_balance"] - signed_value, 2)
    segment["utilised"]["debits"] = round(segment["utilised"]["debits"] + signed_value, 2)


def new_order_record(
    *, user_id: str, order_id: str, now: str, variety: str, instrument: Instrument, params: Mapping
) -> dict:
    """A new order's first history entry, in Kite's order shape; its terms (order_terms) go on top."""
    tag = params.get("tag") or None
    return {
        "account_id": user_id,
        "placed_by": user_id,
        "order_id": order_id,
        "exchange_order_id": None,
        "parent_order_id": None,
        "status": "PUT ORDER REQ RECEIVED",
        "status_message": None,
        "status_message_raw": None,
        "order_timestamp": now,
        "exchange_update_timestamp": None,
        "exchange_timestamp": None,
        "variety": variety,
        "modified": False,
        "exchange": instrument.exchange,
        "tradingsymbol": instrument.tradingsymbol,
        "instrument_token": instrument.token,
        "transaction_type": params["transaction_type"],
        "product": params["product"],
        "validity_ttl": 0,
        "disclosed_quantity": 0,
        "average_price": 0,
        "filled_quantity": 0,
        "pending_quantity": 0,
        "cancelled_quantity": 0,
        "market_protection": 0,
        "meta": {},
        "tag": tag,
        "tags": [tag] if tag else [],
        # The exchange algo id the order was placed with (Kite's `algo_id` field, SEBI's algo framework).
        "algo_id": params.get("algo_id") or None,
        "guid": uuid.uuid4().hex,
    }
