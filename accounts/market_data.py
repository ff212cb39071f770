"""What the paper engine and the pre-trade checks know about instruments.

Instrument metadata (tick size, lot size) comes from `accounts/data/instruments.csv` (the Kite instrument
dump plus a few US symbols), with per-exchange defaults for symbols it does not list. Prices live in
`accounts.prices`.
"""

import csv
import functools
import logging
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

logger = logging.getLogger("accounts.market_data")

INSTRUMENTS_CSV = Path(__file__).parent / "data" / "instruments.csv"

ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
# Every validity any exchange takes; each exchange's own list is in its rules.
VALIDITIES = ("DAY", "IOC", "GTC")


@dataclass(frozen=True)
class ExchangeRules:
    currency: str
    default_tick: Decimal
    products: tuple[str, ...]
    order_types: tuple[str, ...]
    timezone: ZoneInfo
    session_end: time
    lists_every_symbol: bool  # derivatives need their exact contract (lot size) from the table
    # Indian exchanges have no good-till-cancelled order; US brokers (Schwab) do.
    validities: tuple[str, ...] = ("DAY", "IOC")


_IST = ZoneInfo("Asia/Kolkata")
_NEW_YORK = ZoneInfo("America/New_York")
_CASH_EQUITY_IN = ExchangeRules("INR", Decimal("0.05"), ("CNC", "MIS"), ORDER_TYPES, _IST, time(15, 30), False)
# Exchanges reject SL-M on derivatives; SL covers the same need.
_DERIVATIVES_IN = ExchangeRules(
    "INR", Decimal("0.05"), ("NRML", "MIS"), ("MARKET", "LIMIT", "SL"), _IST, time(15, 30), True
)
_US_EQUITY = ExchangeRules(
    "USD", Decimal("0.01"), ("CNC", "MIS"), ORDER_TYPES, _NEW_YORK, time(16, 0), False, ("DAY", "IOC", "GTC")
)

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
