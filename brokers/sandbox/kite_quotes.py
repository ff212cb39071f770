"""Kite quote payloads (`/quote`, `/quote/ohlc`, `/quote/ltp`) built from the simulated market."""

from .market import Instrument, Market


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
        "lower_circuit_limit": round(close * 0.9, 2),
        "upper_circuit_limit": round(close * 1.1, 2),
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
        "lower_circuit_limit": 0.05,
        "upper_circuit_limit": round(max(close, last_price) * 3, 2),
        "ohlc": quote["ohlc"],
        "depth": depth,
    }
