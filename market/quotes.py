"""The one quote service: every quote Thor uses (paper fills and valuations, analytics chains) comes from here.

One `QuoteService` per tenant (`quote_service(tenant=...)`), calling through its market-data connection (its
active session on its shared Kite app, `market.selectors.market_data_connection`, looked up only when a call
is due: a cached answer costs no query), through the broker adapter and `broker_call`:

- batched: at most QUOTE_BATCH instruments a call; a call with room left also quotes what was asked for lately
  for the tenant and what the caller says is worth having (`also`), so one call serves the next readers too;
- budgeted: the adapter spends a token of the app's quote bucket (Kite: one call a second per API key) in Redis
  before each call, so every process together stays within it;
- cached: each instrument's quote is kept in the default cache (keys in market.caches), `live` for FRESH_SECONDS
  and kept THOR_LIVE_STALE_SECONDS as the last good one;
- single flight: the calls for a tenant are made under one lock (Redis), and whoever waited for it reads
  what the holder stored before calling for what is still missing, so N processes asking for the same
  instruments at once make one call;
- degrading: when the broker fails (or the budget is spent) each instrument's last good quote is handed out
  marked `stale`; with none for any of them, MarketDataUnavailable. A failure keeps readers off the broker for
  FRESH_SECONDS.

Every quote carries `as_of` (when Thor received it) and `source` (`live` or `stale`). Names are
"EXCHANGE:SYMBOL"; a malformed one is left out without asking the broker, as is one the broker does not know
(asked again once FRESH_SECONDS have passed, not on every read).
"""

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework import status

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.kite import QUOTE_BATCH, RATE_LIMITS
from brokers.adapters.types import DepthLevel, Quote
from brokers.models import BrokerConnection
from brokers.services import broker_call
from market import caches
from market.selectors import market_data_connection
from thor import coordination
from thor.errors import ApplicationError

logger = logging.getLogger("market.quotes")

# A quote is live for one period of the connection's quote budget: asking sooner could not be answered anyway.
FRESH_SECONDS = 1 / RATE_LIMITS["quote"]
# One ask may name this many instruments (ten calls, ten seconds of the connection's budget); more is refused.
MAX_INSTRUMENTS = 5000
# How long a holder may keep a connection's lock (then it expires), and how long a reader waits for it: a
# holder's calls each wait up to THOR_KITE_RATE_WAIT for their token and THOR_KITE_TIMEOUT for Kite.
LOCK_SECONDS = 60
LOCK_WAIT_SECONDS = 15
LIVE, STALE = "live", "stale"

# "EXCHANGE:SYMBOL": Kite's symbols are letters, digits and & - _ . and, for indices, spaces ("NIFTY 50").
_NAME = re.compile(r"[A-Z]{2,8}:[A-Za-z0-9][A-Za-z0-9 &._-]{0,63}")

Clock = Callable[[], float]


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
    broker gives it (Kite: five levels)."""

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
    return [name for name in dict.fromkeys(names) if isinstance(name, str) and _NAME.fullmatch(name)]


# --- what the cache keeps: plain values, so a change to MarketQuote never breaks a stored entry --------------


def _levels(levels: tuple[DepthLevel, ...]) -> list[tuple[str, int, int]]:
    return [(str(level.price), level.quantity, level.orders) for level in levels]


def _optional(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _stored(quote: Quote) -> dict[str, Any]:
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


def _market_quote(name: str, stored: dict[str, Any], received_at: float, source: str) -> MarketQuote:
    exchange, _, symbol = name.partition(":")
    return MarketQuote(
        exchange=exchange,
        symbol=symbol,
        last_price=Decimal(stored["last_price"]),
        as_of=datetime.fromtimestamp(received_at, UTC),
        source=source,
        instrument_token=stored["instrument_token"],
        volume=stored["volume"],
        oi=stored["oi"],
        close=_decimal(stored["close"]),
        lower_circuit_limit=_decimal(stored["lower_circuit_limit"]),
        upper_circuit_limit=_decimal(stored["upper_circuit_limit"]),
        bids=tuple(DepthLevel(Decimal(price), quantity, orders) for price, quantity, orders in stored["bids"]),
        asks=tuple(DepthLevel(Decimal(price), quantity, orders) for price, quantity, orders in stored["asks"]),
    )


# Each entry: (received_at epoch seconds, the stored quote, or None when the broker did not know the name).
Entry = tuple[float, dict[str, Any] | None]


class QuoteService:
    """A tenant's quotes: `scope` names its cache entries and lock, `connect` finds the market-data connection
    when a call is due (None: there is none). `clock` (epoch seconds) is injectable for tests."""

    def __init__(self, *, scope: str, connect: Callable[[], BrokerConnection | None], clock: Clock | None = None):
        self.scope = scope
        self._connect = connect
        self._clock = clock or time.time

    @classmethod
    def of(cls, connection: BrokerConnection, *, clock: Clock | None = None) -> "QuoteService":
        """The service calling through this connection, sharing its tenant's cache."""
        return cls(scope=_scope(connection.app.tenant_id), connect=lambda: connection, clock=clock)

    def quotes(
        self, names: Iterable[str], *, also: Callable[[], Iterable[str]] | None = None
    ) -> dict[str, MarketQuote]:
        """The quotes of these "EXCHANGE:SYMBOL" names, keyed by name; what the broker does not know, and
        malformed names, are left out. `also`: names worth quoting in the same call when it has room (asked
        only when a call is made). Raises MarketDataUnavailable when the broker fails and none of them has a
        last good quote, TooManyInstruments past MAX_INSTRUMENTS."""
        asked = valid_names(names)
        if not asked:
            return {}
        asked_at = self._clock()
        self._remember_wanted(asked)
        known = self._read(asked)
        failed = self._failed_recently()
        if not failed and self._missing(asked, known):
            with coordination.single_flight(
                caches.quotes_lock_key(self.scope), timeout=LOCK_SECONDS, wait=LOCK_WAIT_SECONDS
            ):
                # Whoever held the lock stored its answer before releasing it: only what it did not quote is asked.
                known.update(self._read(self._missing(asked, known)))
                failed = self._failed_recently()
                missing = self._missing(asked, known)
                if missing and not failed:
                    failed = not self._fetch(missing, known, also)
        return self._answer(asked, known, failed, asked_at)

    # --- reading and writing the cache ------------------------------------------------------------------

    def _read(self, names: list[str]) -> dict[str, Entry]:
        if not names:
            return {}
        keys = {caches.quote_key(self.scope, name): name for name in names}
        return {keys[key]: entry for key, entry in cache.get_many(list(keys)).items()}

    def _missing(self, names: list[str], known: dict[str, Entry]) -> list[str]:
        now = self._clock()
        return [name for name in names if name not in known or now - known[name][0] >= FRESH_SECONDS]

    def _store(self, entries: dict[str, Entry]) -> None:
        cache.set_many(
            {caches.quote_key(self.scope, name): entry for name, entry in entries.items()},
            settings.THOR_LIVE_STALE_SECONDS,
        )

    def _failed_recently(self) -> bool:
        failed_at = cache.get(caches.quotes_failed_key(self.scope))
        return failed_at is not None and self._clock() - failed_at < FRESH_SECONDS

    def _remember_wanted(self, names: list[str]) -> None:
        try:
            caches.quotes_wanted_add(self.scope, names, self._clock())
        except coordination.CACHE_ERRORS as error:
            _registry_down("Quote registry unavailable: %s", type(error).__name__)

    def _wanted(self, limit: int) -> list[str]:
        try:
            return caches.quotes_wanted(self.scope, self._clock(), limit)
        except coordination.CACHE_ERRORS as error:
            _registry_down("Quote registry unavailable: %s", type(error).__name__)
            return []

    # --- the upstream calls ------------------------------------------------------------------------------

    def _batches(self, missing: list[str], also: Callable[[], Iterable[str]] | None) -> list[list[str]]:
        """`missing` in calls of QUOTE_BATCH, the last one filled up with names asked lately and `also`'s."""
        room = -len(missing) % QUOTE_BATCH
        names = list(missing)
        if room:
            extra: list[str] = self._wanted(room + len(missing))
            if also is not None:
                extra += valid_names(list(also())[:MAX_INSTRUMENTS])
            asked = set(missing)
            names += [name for name in dict.fromkeys(extra) if name not in asked][:room]
        return [names[start : start + QUOTE_BATCH] for start in range(0, len(names), QUOTE_BATCH)]

    def _fetch(self, missing: list[str], known: dict[str, Entry], also: Callable[[], Iterable[str]] | None) -> bool:
        """Quote `missing` (and the padding) into the cache and `known`; False when a call failed (what the
        calls before it quoted is kept)."""
        connection = self._connect()
        if connection is None:
            logger.warning("No market-data connection (an active session on a shared Kite app) for %s", self.scope)
            return False
        for batch in self._batches(missing, also):
            try:
                quoted = self._call(connection, batch)
            except BrokerError as error:
                logger.warning("Quotes through connection %s failed: %s", connection.pk, error.code)
                cache.set(caches.quotes_failed_key(self.scope), self._clock(), max(1, round(FRESH_SECONDS)))
                return False
            received_at = self._clock()
            entries: dict[str, Entry] = {
                name: (received_at, _stored(quoted[name]) if name in quoted else None) for name in batch
            }
            self._store(entries)
            known.update(entries)
        return True

    def _call(self, connection: BrokerConnection, batch: list[str]) -> dict[str, Quote]:
        """One upstream call. The adapter waits up to THOR_KITE_RATE_WAIT for the app's quote token; a call
        right after another (the next batch, or another process's) needs a whole period, which that wait can
        miss by a hair: it is asked once more, waiting again, before the budget counts as spent."""
        for attempt in range(2):
            try:
                return broker_call(connection, lambda adapter: adapter.quotes(batch))
            except BrokerError as error:
                if error.code != BrokerErrorCode.RATE_LIMITED or attempt:
                    raise
        raise AssertionError("unreachable")

    def _answer(
        self, asked: list[str], known: dict[str, Entry], failed: bool, asked_at: float
    ) -> dict[str, MarketQuote]:
        """Live: fresh when asked for, or quoted since (an ask of several calls waits a period for each one
        after the first, and its first calls' quotes are no less live for it). Stale: the last good quote."""
        answer = {}
        for name in asked:
            received_at, stored = known.get(name, (0.0, None))
            # Kept no longer than THOR_LIVE_STALE_SECONDS by this clock too (the cache's TTL runs on its own).
            if stored is None or asked_at - received_at >= settings.THOR_LIVE_STALE_SECONDS:
                continue
            answer[name] = _market_quote(
                name, stored, received_at, LIVE if asked_at - received_at < FRESH_SECONDS else STALE
            )
        if failed and not answer:
            raise MarketDataUnavailable()
        return answer


_registry_down = coordination.OccasionalWarning(logger)


def _scope(tenant_id: int) -> str:
    return f"tenant-{tenant_id}"


def quote_service(*, tenant=None, tenant_slug: str = "", clock: Clock | None = None) -> QuoteService:
    """The quote service of a tenant (by tenant: its connection is looked up when a call is due), or of the
    market-data connection of the tenant with this slug (neither: of any tenant's); MarketDataUnavailable when a
    slug's (or any) tenant has none."""
    if tenant is not None:
        return QuoteService(scope=_scope(tenant.pk), connect=lambda: market_data_connection(tenant=tenant), clock=clock)
    connection = market_data_connection(tenant_slug=tenant_slug)
    if connection is None:
        logger.warning(
            "No market-data connection (an active session on a shared Kite app) for %s", tenant_slug or "any"
        )
        raise MarketDataUnavailable()
    return QuoteService.of(connection, clock=clock)
