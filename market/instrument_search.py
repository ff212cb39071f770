"""US instruments on demand: a US symbol the master does not list is looked up at Schwab, once, and stored.

Kite publishes a daily dump of everything it lists; Schwab publishes none, only an instrument search
(`GET /marketdata/v1/instruments`, the Schwab adapter's `search_instruments`). So the master holds the US
seed (sources.us_seed_rows) and, from then on, every US symbol a paper order named that Schwab lists as an
equity or ETF: lot 1, tick 0.01, multiplier 1, USD, on the exchange Schwab gives (Thor's NASDAQ or NYSE),
with its streaming token (market.us_tokens) as the seed's have.

The lookup goes through the tenant's Schwab market-data connection (`schwab_market_data_connection`: its own
market-data login on the tenant's shared Schwab app, else the most recently synced active session on it, as
market.selectors.market_data_connection picks every market-data connection; Schwab's market data is the same
whoever asks, and every call spends the app's budget, whichever of its logins makes it), within the app's
instrument-search share of its requests (THOR_SCHWAB_INSTRUMENT_SEARCHES_PER_MINUTE), never waiting for it.

- The symbol is checked first (upper-case letters and digits, one class suffix: AAPL, BRK.B): anything else
  is refused without a call, and without building a cache key from it.
- A symbol Schwab does not list, or lists as something Thor does not trade (a mutual fund, an OTC stock), is
  refused (a 400 naming why) and remembered for THOR_MARKET_UNKNOWN_SYMBOL_SECONDS in every process
  (market.caches), so a bad symbol asks Schwab once in that time.
- One process at a time looks a symbol up (a lock per symbol); the others wait, then read what it stored.
- When Schwab cannot be asked (the tenant has no Schwab connection, Schwab fails, the budget is spent) the
  answer is "not verified" (None): the caller keeps the exchange's defaults, as before this lookup existed,
  and a failure keeps the connection's lookups off Schwab for FAILED_SECONDS.
"""

import logging
import re

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError

from brokers.adapters.errors import BrokerError
from brokers.adapters.types import InstrumentInfo
from brokers.models import BrokerConnection, BrokerKind
from brokers.services import broker_call
from market import caches
from market.loading import instrument_upsert
from market.models import Instrument
from market.selectors import market_data_connection
from market.us_tokens import us_token
from thor.coordination import single_flight

logger = logging.getLogger("market.instrument_search")

US_EXCHANGES = ("NASDAQ", "NYSE")
# Letters and digits, and one class suffix after "." or "/" (BRK.B): what a US equity symbol looks like.
US_SYMBOL = re.compile(r"[A-Z][A-Z0-9]{0,9}(?:[./][A-Z0-9]{1,4})?")
# What trades as an equity on a US exchange; the rest (funds, indices, options, bonds) is listed, not traded.
EQUITY_ASSET_TYPES = ("EQUITY", "ETF")
US_TICK_SIZE = "0.01"
# A holder's lookup is one search call (THOR_SCHWAB_TIMEOUT at most, no retry): the lock outlives it.
LOCK_SECONDS = 30.0
FAILED_SECONDS = 30.0


class UsSymbolRefused(ValidationError):
    """A US symbol that cannot be traded: a 400 on `tradingsymbol` saying why (checks raise the same)."""

    def __init__(self, message: str):
        super().__init__({"tradingsymbol": [message]})


def schwab_market_data_connection(tenant) -> BrokerConnection | None:
    """The connection a tenant's US instrument lookups go through: its Schwab market-data connection, the one
    its US quotes come through too (market.selectors.market_data_connection)."""
    return market_data_connection(tenant=tenant, kind=BrokerKind.SCHWAB)


def us_symbol_check(*, exchange: str, symbol: str) -> None:
    """Refuse what cannot be a US symbol before anything is asked or cached."""
    if US_SYMBOL.fullmatch(symbol):
        return
    name = f"{exchange}:{symbol}"
    hint = ""
    if symbol.upper() != symbol and US_SYMBOL.fullmatch(symbol.upper()):
        hint = f" (US symbols are upper case: {symbol.upper()})"
    raise UsSymbolRefused(f"Unknown instrument {name}: not a US symbol{hint}.")


def _listed(symbol: str) -> Instrument | None:
    """The master's row for the symbol on any US exchange (read from the database, never a process's cache)."""
    return Instrument.objects.filter(exchange__in=US_EXCHANGES, tradingsymbol=symbol).first()


def _on_exchange(instrument: Instrument, exchange: str) -> Instrument:
    if instrument.exchange != exchange:
        raise UsSymbolRefused(
            f"{instrument.tradingsymbol} is listed on {instrument.exchange}, not {exchange}: "
            f"order {instrument.exchange}:{instrument.tradingsymbol}."
        )
    caches.instrument_remember((exchange, instrument.tradingsymbol), instrument)
    return instrument


def _refused(symbol: str) -> str | None:
    why = cache.get(caches.us_symbol_refused_key(symbol))
    return why if isinstance(why, str) else None


def _refusal(symbol: str, found: InstrumentInfo | None) -> str | None:
    """Why Schwab's answer makes the symbol untradable here, or None."""
    if found is None:
        return "Schwab lists no such symbol"
    if found.asset_type not in EQUITY_ASSET_TYPES:
        return f"Schwab lists it as {found.asset_type or 'an unknown type'}: only equities and ETFs trade"
    if not found.exchange:
        return f"Schwab lists it on {found.venue or 'no exchange'}, not on NASDAQ or NYSE"
    return None


def _search(connection: BrokerConnection, symbol: str) -> list[InstrumentInfo] | None:
    """Schwab's answer for the symbol, or None when it could not be had (then remembered for FAILED_SECONDS)."""
    try:
        return broker_call(connection, lambda adapter: adapter.search_instruments([symbol], wait_for_budget=False))
    except BrokerError as error:
        logger.warning("US instrument lookup through connection %s failed: %s", connection.pk, error.code.value)
        cache.set(caches.us_lookup_failed_key(connection.pk), error.code.value, FAILED_SECONDS)
        return None


def us_instrument_lookup(*, exchange: str, symbol: str, tenant) -> Instrument | None:
    """The master's row for EXCHANGE:SYMBOL, looked up at Schwab when the master does not list the symbol.

    Raises UsSymbolRefused when the symbol is malformed, Schwab does not list it (as an equity or ETF on a US
    exchange), or lists it on the other exchange; None when Schwab could not be asked (not verified).
    """
    if exchange not in US_EXCHANGES:
        raise ValueError(f"{exchange} is not a US exchange")
    us_symbol_check(exchange=exchange, symbol=symbol)
    if (why := _refused(symbol)) is not None:
        raise UsSymbolRefused(f"Unknown instrument {exchange}:{symbol}: {why}.")
    if (listed := _listed(symbol)) is not None:
        return _on_exchange(listed, exchange)
    connection = schwab_market_data_connection(tenant) if tenant is not None else None
    if connection is None or cache.get(caches.us_lookup_failed_key(connection.pk)) is not None:
        return None
    with single_flight(caches.us_symbol_lock_key(symbol), timeout=LOCK_SECONDS, wait=settings.THOR_SCHWAB_TIMEOUT):
        # Another process may have looked it up while this one waited for the lock.
        if (why := _refused(symbol)) is not None:
            raise UsSymbolRefused(f"Unknown instrument {exchange}:{symbol}: {why}.")
        if (listed := _listed(symbol)) is not None:
            return _on_exchange(listed, exchange)
        answer = _search(connection, symbol)
        if answer is None:
            return None
        found = next((info for info in answer if info.symbol == symbol), None)
        if (why := _refusal(symbol, found)) is not None or found is None:
            cache.set(caches.us_symbol_refused_key(symbol), why, settings.THOR_MARKET_UNKNOWN_SYMBOL_SECONDS)
            raise UsSymbolRefused(f"Unknown instrument {exchange}:{symbol}: {why}.")
        stored = instrument_upsert(
            row={
                "exchange": found.exchange,
                "tradingsymbol": symbol,
                "name": found.name,
                "segment": found.exchange,
                "instrument_type": "EQ",
                "tick_size": US_TICK_SIZE,
                "lot_size": 1,
                # As the seed's: the Schwab stream can follow it (market.us_tokens).
                "instrument_token": str(us_token(symbol) or ""),
            },
            source=Instrument.Source.SCHWAB,
        )
        logger.info("US instrument %s:%s looked up at Schwab and stored", stored.exchange, symbol)
    return _on_exchange(stored, exchange)
