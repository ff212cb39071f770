"""What the quote service (market.quotes) hands out and keeps: a `MarketQuote`, the names it is asked by
("EXCHANGE:SYMBOL"), and the plain values each quote is cached as, so a change to MarketQuote never breaks a
stored entry."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokers.adapters.types import DepthLevel, Quote
from thor.errors import ApplicationError

# One ask may name this many instruments (ten calls, ten seconds of Kite's budget); more is refused.
MAX_INSTRUMENTS = 5000
LIVE, STALE = "live", "stale"

# "EXCHANGE:SYMBOL": Kite's symbols are letters, digits and & - _ . and, for indices, spaces ("NIFTY 50").
NAME = re.compile(r"[A-Z]{2,8}:[A-Za-z0-9][A-Za-z0-9 &._-]{0,63}")


class TooManyInstruments(ApplicationError):
    def __init__(self, count: int):
        super().__init__(
            f"At most {MAX_INSTRUMENTS} instruments can be quoted at once, not {count}.", code="too_many_instruments"
        )


@dataclass(frozen=True)
class MarketQuote:
    """One instrument's quote as the service hands it out; `bids` and `asks` are the book, best first, where the
    broker gives it (Kite: five levels; Schwab's quote has none)."""

    exchange: str
    symbol: str
    last_price: Decimal
    as_of: datetime
    source: str  # live | stale
    instrument_token: int | None = None
    volume: int | None = None
    oi: int | None = None
    close: Decimal | None = None
    lower_circuit_limit: Decimal | None = None
    upper_circuit_limit: Decimal | None = None
    bids: tuple[DepthLevel, ...] = ()
    asks: tuple[DepthLevel, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.exchange}:{self.symbol}"


def instrument_name(exchange: str, symbol: str) -> str:
    return f"{exchange}:{symbol}"


def valid_names(names: Iterable[object]) -> list[str]:
    """The well-formed "EXCHANGE:SYMBOL" names, each once, in the order given; TooManyInstruments past
    MAX_INSTRUMENTS (counted before anything is dropped, so a huge list is refused before it is read through)."""
    names = names if isinstance(names, list | tuple | set | frozenset | dict) else list(names)
    if len(names) > MAX_INSTRUMENTS:
        raise TooManyInstruments(len(names))
    return [name for name in dict.fromkeys(names) if isinstance(name, str) and NAME.fullmatch(name)]


# --- what the cache keeps ----------------------------------------------------------------------------


def _levels(levels: tuple[DepthLevel, ...]) -> list[tuple[str, int, int]]:
    return [(str(level.price), level.quantity, level.orders) for level in levels]


def _optional(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def stored(quote: Quote) -> dict[str, Any]:
    return {
        "last_price": str(quote.last_price),
        "instrument_token": quote.instrument_token,
        "volume": quote.volume,
        "oi": quote.oi,
        "close": _optional(quote.close),
        "lower_circuit_limit": _optional(quote.lower_circuit_limit),
        "upper_circuit_limit": _optional(quote.upper_circuit_limit),
        "bids": _levels(quote.bids),
        "asks": _levels(quote.asks),
    }


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def market_quote(name: str, kept: dict[str, Any], received_at: float, source: str) -> MarketQuote:
    exchange, _, symbol = name.partition(":")
    return MarketQuote(
        exchange=exchange,
        symbol=symbol,
        last_price=Decimal(kept["last_price"]),
        as_of=datetime.fromtimestamp(received_at, UTC),
        source=source,
        instrument_token=kept["instrument_token"],
        volume=kept["volume"],
        oi=kept["oi"],
        close=_decimal(kept["close"]),
        lower_circuit_limit=_decimal(kept["lower_circuit_limit"]),
        upper_circuit_limit=_decimal(kept["upper_circuit_limit"]),
        bids=tuple(DepthLevel(Decimal(price), quantity, orders) for price, quantity, orders in kept["bids"]),
        asks=tuple(DepthLevel(Decimal(price), quantity, orders) for price, quantity, orders in kept["asks"]),
    )
