"""What the paper engine and the pre-trade checks know about instruments and prices.

Instrument metadata (tick size, lot size) comes from `accounts/data/instruments.csv` (the Kite instrument
dump plus a few US symbols), with per-exchange defaults for symbols it does not list. Prices come from a
`PriceSource` chosen by `THOR_PAPER_PRICE_SOURCE`: the broker sandbox's moving prices (development), Kite
quotes through a session on the tenant's own Kite app (production), or a fixed table (tests).
"""

import csv
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import requests
from django.conf import settings
from rest_framework import status

from thor.errors import ApplicationError

logger = logging.getLogger("accounts.market_data")

INSTRUMENTS_CSV = Path(__file__).parent / "data" / "instruments.csv"

ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
VALIDITIES = ("DAY", "IOC")


@dataclass(frozen=True)
class ExchangeRules:
    currency: str
    default_tick: Decimal
    products: tuple[str, ...]
    order_types: tuple[str, ...]
    timezone: ZoneInfo
    session_end: time
    lists_every_symbol: bool  # derivatives need their exact contract (lot size) from the table


_IST = ZoneInfo("Asia/Kolkata")
_NEW_YORK = ZoneInfo("America/New_York")
_CASH_EQUITY_IN = ExchangeRules("INR", Decimal("0.05"), ("CNC", "MIS"), ORDER_TYPES, _IST, time(15, 30), False)
# Exchanges reject SL-M on derivatives; SL covers the same need.
_DERIVATIVES_IN = ExchangeRules(
    "INR", Decimal("0.05"), ("NRML", "MIS"), ("MARKET", "LIMIT", "SL"), _IST, time(15, 30), True
)
_US_EQUITY = ExchangeRules("USD", Decimal("0.01"), ("CNC", "MIS"), ORDER_TYPES, _NEW_YORK, time(16, 0), False)

EXCHANGES: dict[str, ExchangeRules] = {
    "NSE": _CASH_EQUITY_IN,
    "BSE": _CASH_EQUITY_IN,
    "NFO": _DERIVATIVES_IN,
    "BFO": _DERIVATIVES_IN,
    "MCX": ExchangeRules("INR", Decimal("1"), ("NRML", "MIS"), ("MARKET", "LIMIT", "SL"), _IST, time(23, 30), True),
    "NASDAQ": _US_EQUITY,
    "NYSE": _US_EQUITY,
}


@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str
    tick_size: Decimal
    lot_size: int

    @property
    def rules(self) -> ExchangeRules:
        return EXCHANGES[self.exchange]


@functools.cache
def _instrument_table() -> dict[tuple[str, str], Instrument]:
    with open(INSTRUMENTS_CSV, newline="", encoding="utf-8") as handle:
        return {
            (row["exchange"], row["tradingsymbol"]): Instrument(
                exchange=row["exchange"],
                symbol=row["tradingsymbol"],
                tick_size=Decimal(row["tick_size"]),
                lot_size=int(row["lot_size"]),
            )
            for row in csv.DictReader(handle)
        }


def instrument_get(*, exchange: str, symbol: str) -> Instrument | None:
    """The instrument, or None when the exchange is unknown or a derivative contract is not listed."""
    rules = EXCHANGES.get(exchange)
    if rules is None:
        return None
    listed = _instrument_table().get((exchange, symbol))
    if listed is not None:
        return listed
    if rules.lists_every_symbol:
        return None
    return Instrument(exchange=exchange, symbol=symbol, tick_size=rules.default_tick, lot_size=1)


class PriceSource(Protocol):
    def prices(self, instruments: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """Last prices keyed by (exchange, symbol); instruments without a price are left out."""


class FixedPriceSource:
    """Prices from a table `{"NSE:INFY": "1500.00"}` (settings `THOR_PAPER_FIXED_PRICES`)."""

    def __init__(self, table: Mapping[str, object]):
        self.table = {tuple(key.split(":", 1)): Decimal(str(price)) for key, price in table.items()}

    def prices(self, instruments):
        return {instrument: self.table[instrument] for instrument in instruments if instrument in self.table}


class MarketDataUnavailable(ApplicationError):
    """The price source cannot be reached: a paper fill would have no price to fill at."""

    def __init__(self):
        super().__init__(
            "Market prices are unavailable right now; try again shortly.",
            code="market_data_unavailable",
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )


class SandboxPriceSource:
    """The broker sandbox's moving prices (`GET /_sandbox/prices` at THOR_KITE_API_ROOT): development only.

    They oscillate around each instrument's base price, so a paper limit order near the market fills
    within a minute. Raises MarketDataUnavailable when the sandbox is not running.
    """

    TIMEOUT_SECONDS = 2

    def prices(self, instruments):
        names = {instrument: f"{instrument[0]}:{instrument[1]}" for instrument in instruments}
        if not names:
            return {}
        try:
            response = requests.get(
                f"{settings.THOR_KITE_API_ROOT}/_sandbox/prices",
                params={"i": list(names.values())},
                timeout=self.TIMEOUT_SECONDS,
            )
            response.raise_for_status()
            quoted = response.json()
        except (requests.RequestException, ValueError) as error:
            logger.warning("No paper prices from the sandbox: %s", type(error).__name__)
            raise MarketDataUnavailable() from None
        # Through str: the sandbox's JSON numbers are floats, Thor's money is Decimal.
        return {instrument: Decimal(str(quoted[name])) for instrument, name in names.items() if name in quoted}


def price_source(*, tenant) -> PriceSource:
    """The prices a tenant's paper accounts trade at; a source that uses a broker session uses only the tenant's."""
    kind = settings.THOR_PAPER_PRICE_SOURCE
    if kind == "fixed":
        return FixedPriceSource(settings.THOR_PAPER_FIXED_PRICES)
    if kind == "sandbox":
        return SandboxPriceSource()
    if kind == "kite":
        from accounts.live import KiteQuotePriceSource

        return KiteQuotePriceSource(tenant=tenant)
    raise ValueError(f"Unknown THOR_PAPER_PRICE_SOURCE {kind!r}")
