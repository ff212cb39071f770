"""Thor's one money policy: how amounts, prices and quantities are rounded and rendered, everywhere.

- Cash, P&L, values and every other amount: the account currency's cents, 2 decimals.
- Prices (average, last, limit, trigger): on the instrument's tick, which is at most 4 decimals.
- Quantities: whole numbers, as the exchanges Thor trades (NSE, BSE, NFO, MCX, US equities) trade them.
- One rounding rule: ROUND_HALF_UP (half a cent goes up), never the context default.

The API serializers, the WebSocket payloads, the seed aliases and the admin all render through here.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
PRICE_STEP = Decimal("0.0001")
ROUNDING = ROUND_HALF_UP
MONEY_PLACES = 2
PRICE_PLACES = 4


def to_decimal(value) -> Decimal:
    """A Decimal from a broker number without float noise (floats go through repr)."""
    if value is None:
        return Decimal("0")
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def is_market_price(value) -> bool:
    """Whether a price a market source gives (a quote's, a tick's, a price table's) is one an order could trade at:
    a finite number above zero. Kite quotes 0 for a contract that has not traded, and a broker's missing price reads
    as 0 (to_decimal): a source that says 0, a negative number or no number has not priced the instrument."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return False
    return number.is_finite() and number > 0


def money(value) -> Decimal:
    return to_decimal(value).quantize(CENT, rounding=ROUNDING)


def price(value) -> Decimal | None:
    return None if value is None else to_decimal(value).quantize(PRICE_STEP, rounding=ROUNDING)


def quantity(value) -> int:
    return int(to_decimal(value).to_integral_value(rounding=ROUNDING))


def money_text(value) -> str:
    return str(money(value))


def price_text(value) -> str | None:
    rounded = price(value)
    return None if rounded is None else str(rounded)
