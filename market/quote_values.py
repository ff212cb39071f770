"""What the quote service (market.quotes) hands out and keeps: a `MarketQuote`, the names it is asked by
("EXCHANGE:SYMBOL"), the plain values each quote is cached as, so a change to MarketQuote never breaks a
stored entry, how long an ask may wait (`Patience`) and what it raises when nothing can be had."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rest_framework import status

from brokers.adapters.types import DepthLevel, Quote
from thor.errors import ApplicationError

# One ask may name this many instruments (ten calls, ten seconds of Kite's budget); more is refused.
MAX_INSTRUMENTS = 5000
LIVE, STALE = "live", "stale"

# "EXCHANGE:SYMBOL": Kite's symbols are letters, digits and & - _ . and, for indices, spaces ("NIFTY 50").
NAME = re.compile(r"[A-Z]{2,8}:[A-Za-z0-9][A-Za-z0-9 &._-]{0,63}")


# How long a reader waits by default for another reader's call to the broker (the connection's lock).
LOCK_WAIT_SECONDS = 15


@dataclass(frozen=True)
class Patience:
    """How long an ask may hold its caller up. The default suits a caller that would rather wait than go without:
    LOCK_WAIT_SECONDS for the connection's lock (then it calls unlocked), the adapter's rate wait for the budget
    (asked twice), and a kept quote asked for again once its feed's fresh period is over. `serves_seconds`
    longer than that period lets a kept quote serve that long without a call (handed out `stale` past the period:
    its `as_of` says how old). Without `wait_for_budget` a spent budget is no failure: it keeps no reader off."""

    lock_wait: float = LOCK_WAIT_SECONDS
    call_without_lock: bool = True
    wait_for_budget: bool = True
    serves_seconds: float = 0.0
    # A call with room fills it with names asked lately (the next readers' quotes for free): a caller that
    # waits on the answer (an order) asks only for its own, a smaller answer to parse.
    pad: bool = True
    # A kept quote served past its feed's fresh period is asked for again off this call (market.quote_refresh),
    # so that the next ask within `serves_seconds` need not wait for it.
    refresh_ahead: bool = False


PATIENT = Patience()
# How a refresh ahead asks: never waiting for the lock (whoever holds it is quoting) or the budget, no padding.
REFRESHING = Patience(lock_wait=0, call_without_lock=False, wait_for_budget=False, pad=False)


class MarketDataUnavailable(ApplicationError):
    """No quote can be had: no market-data connection, or the broker failed and no last good quote is kept."""

    def __init__(self):
        super().__init__(
            "Market prices are unavailable right now; try again shortly.",
            code="market_data_unavailable",
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )


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
