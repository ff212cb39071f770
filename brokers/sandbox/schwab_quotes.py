"""The Schwab sandbox's market data: US equities priced by the shared market, in `/marketdata/v1/quotes`'
shape, and the instrument search of `/marketdata/v1/instruments`.

The search answers as Schwab's does: `{"instruments": [{"cusip", "symbol", "description", "exchange",
"assetType"}]}` (plus `fundamental` under that projection), an empty list for symbols it does not list, and
a 400 in the market-data error shape (`{"errors": [{"id", "status", "title", "detail", "source"}]}`) for a
missing symbol or an unknown projection.
"""

import re
import uuid
import zlib
from collections.abc import Callable

from .market import US_EXCHANGES, Instrument, Market
from .schwab_models import SchwabError, us_descriptions

PROJECTIONS = ("symbol-search", "symbol-regex", "desc-search", "desc-regex", "search", "fundamental")
MAX_SEARCH_SYMBOLS = 500
MAX_SEARCH_CHARACTERS = 4000
MAX_PATTERN_CHARACTERS = 100


def market_data_error(detail: str, parameter: str, status: int = 400) -> SchwabError:
    """The market-data API's error shape (its spec's ErrorResponse), not the Trader API's."""
    return SchwabError(
        status,
        {
            "errors": [
                {
                    "id": str(uuid.uuid4()),
                    "status": str(status),
                    "title": "Bad Request",
                    "detail": detail,
                    "source": {"parameter": parameter},
                }
            ]
        },
    )


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

    # --- the instrument search ----------------------------------------------------------------------

    def _listing(self, symbol: str) -> dict:
        instrument = self.find(symbol)
        description = self.description(symbol)
        venue = instrument.exchange if instrument else ""
        if venue == "NYSE" and description.get("asset_type") == "ETF":
            venue = "NYSE Arca"  # where Schwab lists the NYSE-traded ETFs (Thor's label stays NYSE)
        return {
            "cusip": description.get("cusip", ""),
            "symbol": symbol,
            "description": description.get("description", symbol),
            "exchange": venue,
            "assetType": description.get("asset_type") or "EQUITY",
        }

    def _fundamental(self, symbol: str) -> dict:
        instrument = self.find(symbol)
        base = instrument.base_price if instrument else 0.0
        return {
            "symbol": symbol,
            "high52": round(base * 1.3, 2),
            "low52": round(base * 0.7, 2),
            "peRatio": round(10 + zlib.crc32(symbol.encode()) % 300 / 10, 2),
            "dividendYield": round(zlib.crc32(symbol[::-1].encode()) % 400 / 100, 2),
            "marketCap": float(1_000 + zlib.crc32(symbol.encode()) % 3_000_000),
        }

    def _matching(self, test: Callable[[str], bool]) -> list[str]:
        return [symbol for symbol in self._descriptions if self.find(symbol) and test(symbol)]

    def instruments(self, symbol: str, projection: str) -> dict:
        """`/marketdata/v1/instruments?symbol=...&projection=...`; raises SchwabError for bad input."""
        symbol = (symbol or "").strip()
        if not symbol:
            raise market_data_error("symbol is required.", "symbol")
        if projection not in PROJECTIONS:
            raise market_data_error(f"projection should be one of {', '.join(PROJECTIONS)}.", "projection")
        if len(symbol) > MAX_SEARCH_CHARACTERS:
            raise market_data_error(f"symbol is longer than {MAX_SEARCH_CHARACTERS} characters.", "symbol")
        if projection in ("symbol-search", "fundamental"):
            wanted = list(dict.fromkeys(part.strip().upper() for part in symbol.split(",") if part.strip()))
            if len(wanted) > MAX_SEARCH_SYMBOLS:
                raise market_data_error(f"At most {MAX_SEARCH_SYMBOLS} symbols a search.", "symbol")
            symbols = [name for name in wanted if name in self._descriptions and self.find(name)]
        elif projection == "desc-search":
            words = symbol.lower()
            symbols = self._matching(lambda name: words in self.description(name).get("description", "").lower())
        else:
            if len(symbol) > MAX_PATTERN_CHARACTERS:
                raise market_data_error(f"A pattern is at most {MAX_PATTERN_CHARACTERS} characters.", "symbol")
            try:
                pattern = re.compile(symbol, re.IGNORECASE)
            except re.error:
                raise market_data_error("symbol is not a valid regular expression.", "symbol") from None
            if projection == "desc-regex":
                symbols = self._matching(lambda name: bool(pattern.search(self.description(name)["description"])))
            else:
                symbols = self._matching(lambda name: bool(pattern.fullmatch(name)))
        listings = []
        for name in symbols:
            listing = self._listing(name)
            if projection == "fundamental":
                listing["fundamental"] = self._fundamental(name)
            listings.append(listing)
        return {"instruments": listings}
