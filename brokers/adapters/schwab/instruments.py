"""Schwab's instrument search (`GET /marketdata/v1/instruments`): what it is asked, and its answer read into
Thor's neutral InstrumentInfo.

Schwab answers `{"instruments": [{"cusip", "symbol", "description", "exchange", "assetType"}, ...]}` (each with
a `fundamental` object under `projection=fundamental`), and an empty list (or no `instruments`) when it knows
none of the symbols. `exchange` is Schwab's venue name; Thor labels US listings NASDAQ or NYSE only, as its
seed does (SPY, listed on NYSE Arca, is NYSE:SPY): Schwab routes a US equity order by its symbol alone, so
the label never reaches Schwab. A venue Thor does not trade (OTC, pink sheets, a mutual fund's) maps to "".
"""

import re
from collections.abc import Iterable, Mapping
from typing import Any

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import InstrumentInfo

# Exact symbols: letters, digits, and one class suffix after "." or "/" (BRK.B); at most 15 characters.
US_SYMBOL = re.compile(r"[A-Z][A-Z0-9]{0,9}(?:[./][A-Z0-9]{1,4})?")
# A description search: words, not a pattern (the regex projections are not used).
QUERY = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,&'-]{0,63}")
# Schwab takes a comma-separated list; more than this many are asked in several calls.
SEARCH_BATCH = 100
MAX_SYMBOLS = 500
# Schwab's venue names (lower case) and the exchange Thor labels them with.
VENUES = {
    "nasdaq": "NASDAQ",
    "nyse": "NYSE",
    "nyse arca": "NYSE",
    "pacific": "NYSE",
    "arca": "NYSE",
    "amex": "NYSE",
    "nyse american": "NYSE",
    "nyse mkt": "NYSE",
    "bats": "NYSE",
    "cboe bzx": "NYSE",
}
# What trades as an equity on a US exchange; the rest (funds, indices, options, bonds) is listed, not traded.
EQUITY_ASSET_TYPES = ("EQUITY", "ETF")


def _invalid(message: str) -> BrokerError:
    return BrokerError(message, code=BrokerErrorCode.INVALID_INPUT, permanent=True)


def checked_symbols(symbols: Iterable[str]) -> list[str]:
    """The symbols as Schwab is asked for them, each once, in order; any that is not a US symbol refuses the
    whole ask before anything is sent (a comma or an ampersand in one would change what Schwab is asked)."""
    checked: list[str] = []
    for symbol in symbols:
        if not isinstance(symbol, str) or not US_SYMBOL.fullmatch(symbol):
            raise _invalid("Not a US symbol (upper-case letters and digits, with an optional .X class).")
        if symbol not in checked:
            checked.append(symbol)
    if not checked:
        raise _invalid("Nothing to search for: name a symbol or a description.")
    if len(checked) > MAX_SYMBOLS:
        raise _invalid(f"At most {MAX_SYMBOLS} symbols a search.")
    return checked


def checked_query(query: str) -> str:
    query = query.strip() if isinstance(query, str) else ""
    if not QUERY.fullmatch(query):
        raise _invalid("A search is 1 to 64 letters, digits, spaces and . , & ' -")
    return query


def thor_exchange(venue: object) -> str:
    return VENUES.get(str(venue or "").strip().lower(), "")


def instruments_of(data: Any) -> list[InstrumentInfo]:
    """Every instrument in one answer, as Thor names it; entries without a symbol are left out."""
    items = data.get("instruments") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        return []
    found = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        symbol = str(item.get("symbol") or "").strip()
        if not symbol:
            continue
        venue = str(item.get("exchange") or "").strip()
        found.append(
            InstrumentInfo(
                symbol=symbol,
                exchange=thor_exchange(venue),
                name=str(item.get("description") or "").strip()[:128],
                asset_type=str(item.get("assetType") or "").strip().upper(),
                cusip=str(item.get("cusip") or "").strip(),
                venue=venue,
                raw=dict(item),
            )
        )
    return found
