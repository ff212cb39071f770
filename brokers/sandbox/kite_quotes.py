"""Kite quote payloads (`/quote`, `/quote/ohlc`, `/quote/ltp`) built from the simulated market, and the
price band an order must be placed within."""

from .market import Instrument, Market

# The exchanges' limit price protection for options (issue 22): above a premium of 50, +/-40% of the last
# price; at or below it, +/-20 absolute.
OPTION_PREMIUM_THRESHOLD, OPTION_BAND_PERCENT, OPTION_BAND_ABSOLUTE = 50.0, 40.0, 20.0
EQUITY_CIRCUIT_PERCENT = 10.0
LOWEST_PRICE = 0.05


def equity_circuit_limits(close: float, last_price: float) -> tuple[float, float]:
    """The day's circuit around the previous close; a price pinned outside it widens it (so the last price is
    always tradable, as on an exchange that moved the band)."""
    ratio = EQUITY_CIRCUIT_PERCENT / 100
    return round(min(close, last_price) * (1 - ratio), 2), round(max(close, last_price) * (1 + ratio), 2)


def allowed_band(market: Market, instrument: Instrument) -> tuple[float, float]:
    """The prices a LIMIT or SL order may be placed at: an option's price protection range, else the circuit."""
    last_price = market.price(instrument)
    contract = market.chain.find(instrument.key)
    if contract is not None and contract.kind in ("CE", "PE"):
        if last_price > OPTION_PREMIUM_THRESHOLD:
            ratio = OPTION_BAND_PERCENT / 100
            return round(last_price * (1 - ratio), 2), round(last_price * (1 + ratio), 2)
        return max(LOWEST_PRICE, round(last_price - OPTION_BAND_ABSOLUTE, 2)), round(
            last_price + OPTION_BAND_ABSOLUTE, 2
        )
    if contract is not None:  # a future: the derivative quote's wide circuit
        return LOWEST_PRICE, _derivative_upper_circuit(instrument.base_price, last_price)
    return equity_circuit_limits(instrument.base_price, last_price)


def _derivative_upper_circuit(close: float, last_price: float) -> float:
    return round(max(close, last_price) * 3, 2)


def kite_quote(market: Market, instrument: Instrument, mode: str, timestamp: str) -> dict:
    """The quote of one instrument in Kite's shape for `mode` ("quote", "ohlc" or "ltp")."""
    last_price = market.price(instrument)
    quote: dict[str, object] = {"instrument_token": instrument.token, "last_price": last_price}
    if mode == "ltp":
        return quote
    low, high = market.day_range(instrument)
    close = instrument.base_price
    quote["ohlc"] = {"open": close, "high": high, "low": low, "close": close}
    if mode == "ohlc":
        return quote
    tick = instrument.tick_size
    derivative = market.derivative_activity(instrument, last_price)
    if derivative is not None:
        return _derivative_quote(quote, derivative, timestamp)
    return {
        "instrument_token": instrument.token,
        "timestamp": timestamp,
        "last_trade_time": timestamp,
        "last_price": last_price,
        "last_quantity": 5,
        "buy_quantity": 5000,
        "sell_quantity": 5000,
        "volume": 1_000_000,
        "average_price": round((high + low) / 2, 2),
        "oi": 0,
        "oi_day_high": 0,
        "oi_day_low": 0,
        "net_change": round(last_price - close, 2),
        "lower_circuit_limit": equity_circuit_limits(close, last_price)[0],
        "upper_circuit_limit": equity_circuit_limits(close, last_price)[1],
        "ohlc": quote["ohlc"],
        "depth": {
            "buy": [_depth_level(last_price - tick * level) for level in range(1, 6)],
            "sell": [_depth_level(last_price + tick * level) for level in range(1, 6)],
        },
    }


def _depth_level(price: float) -> dict:
    return {"price": round(price, 2), "quantity": 100, "orders": 2}


def _derivative_quote(quote: dict, activity: dict, timestamp: str) -> dict:
    last_price, close = quote["last_price"], quote["ohlc"]["close"]
    depth = activity["depth"]
    oi = activity["oi"]
    return {
        "instrument_token": quote["instrument_token"],
        "timestamp": timestamp,
        "last_trade_time": timestamp,
        "last_price": last_price,
        "last_quantity": depth["buy"][0]["quantity"],
        "buy_quantity": sum(level["quantity"] for level in depth["buy"]) * 4,
        "sell_quantity": sum(level["quantity"] for level in depth["sell"]) * 4,
        "volume": activity["volume"],
        "average_price": last_price,
        "oi": oi,
        "oi_day_high": int(oi * 1.05),
        "oi_day_low": int(oi * 0.95),
        "net_change": round(last_price - close, 2),
        "lower_circuit_limit": LOWEST_PRICE,
        "upper_circuit_limit": _derivative_upper_circuit(close, last_price),
        "ohlc": quote["ohlc"],
        "depth": depth,
    }
