from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def to_money(value) -> Decimal:
    """A Decimal rounded to cents; strings and ints are exact, floats go through str()."""
    if isinstance(value, float):
        value = str(value)
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def to_decimal(value) -> Decimal:
    """A Decimal from a broker number without float noise (floats go through repr)."""
    if value is None:
        return Decimal("0")
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)
