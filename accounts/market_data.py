"""What the paper engine and the pre-trade checks know about instruments.

Instrument metadata (tick and lot sizes, expiry, freeze quantity) comes from the market app's instrument
master (every contract of Kite's dump, the US seed and the US symbols looked up at Schwab since), with
per-exchange defaults for the equities it does not list. Prices live in `accounts.prices`.
"""

import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from accounts.models import TradingAccount
from market.instrument_search import US_EXCHANGES, us_instrument_lookup
from market.selectors import instrument_get as master_instrument_get

logger = logging.getLogger("accounts.market_data")

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
    # The close while New York keeps standard time, where it differs: MCX's internationally referenced
    # contracts trade until 23:30 IST while the US keeps summer time and until 23:55 in its winter (MCX moves
    # its hours with the US clock change, from the next trading day).
    us_winter_session_end: time | None = None

    def session_end_on(self, day: date) -> time:
        """The exchange's close on trading day `day` (its own time zone)."""
        if self.us_winter_session_end is not None and not us_summer_time_on(day):
            return self.us_winter_session_end
        return self.session_end


def us_summer_time_on(day: date) -> bool:
    """Does New York keep daylight saving time on `day` (from the second Sunday of March to the first of
    November)?"""
    return bool(datetime.combine(day, time(12), tzinfo=_NEW_YORK).dst())


_IST = ZoneInfo("Asia/Kolkata")
_NEW_YORK = ZoneInfo("America/New_York")
_CASH_EQUITY_IN = ExchangeRules("INR", Decimal("0.05"), ("CNC", "MIS"), ORDER_TYPES, _IST, time(15, 30), False)
# Exchanges reject SL-M on derivatives; SL covers the same need.
_DERIVATIVES_IN = ExchangeRules(
    "INR", Decimal("0.05"), ("NRML", "MIS"), ("MARKET", "LIMIT", "SL"), _IST, time(15, 30), True
)
_CURRENCY_DERIVATIVES_IN = ExchangeRules(
    "INR", Decimal("0.0025"), ("NRML", "MIS"), ("MARKET", "LIMIT", "SL"), _IST, time(17, 0), True
)
_US_EQUITY = ExchangeRules(
    "USD", Decimal("0.01"), ("CNC", "MIS"), ORDER_TYPES, _NEW_YORK, time(16, 0), False, ("DAY", "IOC", "GTC")
)

EXCHANGES: dict[str, ExchangeRules] = {
    "NSE": _CASH_EQUITY_IN,
    "BSE": _CASH_EQUITY_IN,
    "NFO": _DERIVATIVES_IN,
    "BFO": _DERIVATIVES_IN,
    "MCX": ExchangeRules(
        "INR",
        Decimal("1"),
        ("NRML", "MIS"),
        ("MARKET", "LIMIT", "SL"),
        _IST,
        time(23, 30),
        True,
        us_winter_session_end=time(23, 55),
    ),
    # Currency derivatives, NSE's (Kite's CDS) and BSE's (BCD): 09:00 to 17:00 IST, quoted to a quarter paisa,
    # quantity in lots.
    "CDS": _CURRENCY_DERIVATIVES_IN,
    "BCD": _CURRENCY_DERIVATIVES_IN,
    "NASDAQ": _US_EQUITY,
    "NYSE": _US_EQUITY,
}


@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str
    tick_size: Decimal
    lot_size: int
    expiry: date | None = None
    # The exchange's largest quantity in one order, where it sets one.
    freeze_quantity: int | None = None
    # The master marked it expired (past its expiry, or gone from its source's listing).
    expired: bool = False
    # False for what is never traded whatever the date (an index); expiry is `expired_at`'s.
    tradable: bool = True
    # The master's kind: EQ, FUT, CE, PE ("" where the master does not list the symbol).
    instrument_type: str = ""
    # Price units one unit of quantity is worth (brokers.contract_multipliers): value = quantity x price x this.
    # None where the master does not know it (an MCX contract missing from the table): paper refuses it.
    multiplier: int | None = 1

    @property
    def rules(self) -> ExchangeRules:
        return EXCHANGES[self.exchange]

    def expired_at(self, moment: datetime) -> bool:
        """Expired, or past its last session's close at `moment` (the master's daily load may not have marked it
        yet)."""
        if self.expired or self.expiry is None:
            return self.expired
        local = moment.astimezone(self.rules.timezone)
        return self.expiry < local.date() or (
            self.expiry == local.date() and local.time() >= self.rules.session_end_on(local.date())
        )


def instrument_get(*, exchange: str, symbol: str, account: TradingAccount | None = None) -> Instrument | None:
    """The instrument, or None when the exchange is unknown or a derivative contract is not listed.

    Expired contracts are returned (orders on them are still priced and settled); the checks refuse them.
    With a paper `account`, a US symbol the master does not list is looked up at Schwab through its tenant's
    connection (market.instrument_search: stored when listed; a 400 ValidationError when Schwab lists no such
    equity); a live order's symbol is its broker's to check.
    """
    rules = EXCHANGES.get(exchange)
    if rules is None:
        return None
    listed = master_instrument_get(exchange=exchange, tradingsymbol=symbol)
    if (
        listed is None
        and exchange in US_EXCHANGES
        and account is not None
        and account.mode == TradingAccount.Mode.PAPER
    ):
        listed = us_instrument_lookup(exchange=exchange, symbol=symbol, tenant=account.user.tenant)
    if listed is not None:
        return Instrument(
            exchange=exchange,
            symbol=symbol,
            # An index lists no tick: the exchange's default keeps paper prices on a grid.
            tick_size=listed.tick_size or rules.default_tick,
            lot_size=listed.lot_size,
            expiry=listed.expiry,
            freeze_quantity=listed.freeze_quantity,
            expired=listed.expired,
            tradable=listed.tradable or listed.expired,
            instrument_type=listed.instrument_type,
            multiplier=listed.multiplier,
        )
    if rules.lists_every_symbol:
        return None
    return Instrument(exchange=exchange, symbol=symbol, tick_size=rules.default_tick, lot_size=1)


def contract_multiplier(*, exchange: str, symbol: str) -> int | None:
    """What one unit of quantity of EXCHANGE:SYMBOL is worth in price units (brokers.contract_multipliers): 1 for
    what the master does not list (a US symbol), None for a listed contract whose multiplier Thor does not know."""
    instrument = instrument_get(exchange=exchange, symbol=symbol)
    return instrument.multiplier if instrument is not None else 1


def unknown_multiplier_message(exchange: str, symbol: str, *, paper: bool = True) -> str:
    consequence = (
        "a paper account cannot value it; trade it on a live account"
        if paper
        else "its value cannot be held to the tenant's order value limit"
    )
    return f"{exchange}:{symbol}: Thor does not know this contract's size (its multiplier), so {consequence}."
