"""The Schwab sandbox's quote feed: US equities priced by the shared market, in `/marketdata/v1/quotes`'
shape."""

import zlib
from collections.abc import Callable

from .market import US_EXCHANGES, Instrument, Market
from .schwab_models import us_descriptions


class SchwabQuotes:
    def __init__(self, *, market: Market, clock: Callable[[], float]):
        self.market = market
        self._clock = clock
        self._descriptions = us_descriptions()

    def find(self, symbol: str) -> Instrument | None:
        for exchange in US_EXCHANGES:
            instrument = self.market.find(f"{exchange}:{symbol}")
            if instrument is not None:
                return instrument
        return None

    def price(self, symbol: str) -> float:
        """The symbol's last price, 0.0 for a symbol the market does not trade."""
        instrument = self.find(symbol)
        return self.market.price(instrument) if instrument else 0.0

    def description(self, symbol: str) -> dict:
        """The symbol's row of the US equities fixture (cusip, description), {} when it has none."""
        return self._descriptions.get(symbol, {})

    def quotes(self, symbols: list[str]) -> dict:
        """`/marketdata/v1/quotes` for `symbols`; unknown ones are listed under `errors.invalidSymbols`."""
        now_ms = int(self._clock() * 1000)
        answer: dict = {}
        invalid = []
        for symbol in symbols:
            instrument = self.find(symbol)
            if instrument is None:
                invalid.append(symbol)
                continue
            price = self.market.price(instrument)
            low, high = self.market.day_range(instrument)
            description = self.description(symbol)
            answer[symbol] = {
                "assetMainType": "EQUITY",
                "assetSubType": "COE",
                "quoteType": "NBBO",
                "realtime": True,
                "ssid": instrument.token,
                "symbol": symbol,
                "reference": {
                    "cusip": description.get("cusip", ""),
                    "description": description.get("description", symbol),
                    "exchange": "Q" if instrument.exchange == "NASDAQ" else "N",
                    "exchangeName": instrument.exchange,
                },
                "quote": {
                    "askPrice": round(price + 0.01, 2),
                    "bidPrice": round(price - 0.01, 2),
                    "closePrice": instrument.base_price,
                    "highPrice": high,
                    "lastPrice": price,
                    "lowPrice": low,
                    "mark": price,
                    "netChange": round(price - instrument.base_price, 4),
                    "openPrice": instrument.base_price,
                    "quoteTime": now_ms,
                    "totalVolume": 1_000_000 + zlib.crc32(symbol.encode()) % 1_000_000,
                    "tradeTime": now_ms,
                },
            }
        if invalid:
            answer["errors"] = {"invalidSymbols": invalid}
        return answer
