"""Where paper accounts get their prices: one `PriceSource` per tenant, chosen by `THOR_PAPER_PRICE_SOURCE`.

The broker sandbox's moving prices (development), Kite quotes through a session on the tenant's own Kite
app (production), or a fixed table (tests). Every price carries the time it was quoted (`Prices`): a reader
that shows it says `stale`, never `live`, once it is older than THOR_LIVE_FRESH_SECONDS.
"""

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import requests
from django.conf import settings
from django.core.cache import cache
from django.db.models import F
from django.utils import timezone
from rest_framework import status

from accounts import caches
from accounts.models import Order, PaperPosition, TradingAccount
from brokers.adapters.errors import BrokerError
from brokers.adapters.kite import QUOTE_BATCH, RATE_LIMITS
from brokers.models import BrokerConnection, BrokerKind
from brokers.services import broker_call
from thor import coordination, snapshots
from thor.errors import ApplicationError

logger = logging.getLogger("accounts.prices")

Instrument = tuple[str, str]  # (exchange, symbol)


@dataclass(frozen=True)
class Quoted:
    price: Decimal
    as_of: datetime


class Prices(Mapping[Instrument, Decimal]):
    """Last prices keyed by (exchange, symbol), each with the time it was quoted; unpriced instruments are absent.

    A mapping of prices (`prices[instrument]`, `.get`, `in`), so callers that only fill at a price read it
    as they would a dict; `as_of_for` and `is_fresh` are for the readers that show it.
    """

    def __init__(self, quoted: Mapping[Instrument, Quoted] | None = None):
        self._quoted = dict(quoted or {})

    @classmethod
    def at(cls, prices: Mapping[Instrument, Decimal], as_of: datetime) -> "Prices":
        return cls({instrument: Quoted(price, as_of) for instrument, price in prices.items()})

    def __getitem__(self, instrument: Instrument) -> Decimal:
        return self._quoted[instrument].price

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._quoted)

    def __len__(self) -> int:
        return len(self._quoted)

    def __repr__(self) -> str:
        return f"Prices({self._quoted!r})"

    def as_of_for(self, instrument: Instrument) -> datetime:
        return self._quoted[instrument].as_of

    @property
    def as_of(self) -> datetime | None:
        """When the oldest of these prices was quoted (None without prices)."""
        return min((quoted.as_of for quoted in self._quoted.values()), default=None)

    def is_fresh(self, instrument: Instrument, *, now: datetime | None = None) -> bool:
        """Priced, and quoted within THOR_LIVE_FRESH_SECONDS: what a read may call `live`."""
        if instrument not in self._quoted:
            return False
        age = (now or timezone.now()) - self._quoted[instrument].as_of
        return age <= timedelta(seconds=settings.THOR_LIVE_FRESH_SECONDS)

    def fresh(self, *, now: datetime | None = None) -> "Prices":
        """Only the fresh prices: what a fill may use (a read shows the others, saying `stale`)."""
        now = now or timezone.now()
        return Prices(
            {instrument: quoted for instrument, quoted in self._quoted.items() if self.is_fresh(instrument, now=now)}
        )


class PriceSource(Protocol):
    def prices(self, instruments: Iterable[Instrument]) -> Prices:
        """Last prices of these instruments with their as_of; instruments without a price are left out."""


class FixedPriceSource:
    """Prices from a table `{"NSE:INFY": "1500.00"}` (settings `THOR_PAPER_FIXED_PRICES`): always fresh."""

    def __init__(self, table: Mapping[str, object]):
        self.table = {tuple(key.split(":", 1)): Decimal(str(price)) for key, price in table.items()}

    def prices(self, instruments) -> Prices:
        wanted = {instrument: self.table[instrument] for instrument in instruments if instrument in self.table}
        return Prices.at(wanted, timezone.now())


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

    def prices(self, instruments) -> Prices:
        names = {instrument: f"{instrument[0]}:{instrument[1]}" for instrument in instruments}
        if not names:
            return Prices()
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
        return Prices.at(
            {instrument: Decimal(str(quoted[name])) for instrument, name in names.items() if name in quoted},
            timezone.now(),
        )


def _name(instrument: Instrument) -> str:
    return f"{instrument[0]}:{instrument[1]}"


@dataclass(frozen=True)
class _PriceTable:
    """A tenant's quoted prices; `asked`, what its last quote call asked for (Kite leaves out what it does not know)."""

    quoted: dict[Instrument, Quoted]
    asked: frozenset[Instrument]


class _WantedInstruments:
    """The instruments a tenant's paper readers asked for lately, in every process: the next quote call asks for them all.

    A Redis sorted set scored by when each was last asked (by the asking host's clock: it only decides what is
    forgotten after WANTED_SECONDS, where seconds of skew do not matter); in this process in the embedded mode.
    """

    WANTED_SECONDS = 600
    _local_lock = threading.Lock()
    _redis_down = coordination.OccasionalWarning(logger)

    def __init__(self, key: str):
        self.key = key

    def _local(self, since: float) -> dict[Instrument, float]:
        # The embedded mode is one process: the locmem cache, under a lock, is the whole registry.
        return {instrument: asked for instrument, asked in (cache.get(self.key) or {}).items() if asked >= since}

    def add(self, instruments: Iterable[Instrument]) -> None:
        now = time.time()
        if not coordination.uses_redis():
            with self._local_lock:
                wanted = self._local(since=now - self.WANTED_SECONDS) | dict.fromkeys(instruments, now)
                cache.set(self.key, wanted, self.WANTED_SECONDS)
            return
        try:
            with coordination.redis_client().pipeline(transaction=False) as pipe:
                pipe.zadd(self.key, {_name(instrument): now for instrument in instruments})
                pipe.expire(self.key, self.WANTED_SECONDS)
                pipe.execute()
        except Exception as error:
            self._redis_down("Paper price registry unavailable: %s", type(error).__name__)

    def recent(self) -> set[Instrument]:
        since = time.time() - self.WANTED_SECONDS
        if not coordination.uses_redis():
            with self._local_lock:
                return set(self._local(since=since))
        try:
            with coordination.redis_client().pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(self.key, "-inf", since)
                pipe.zrange(self.key, 0, -1)
                _, names = pipe.execute()
        except Exception as error:
            self._redis_down("Paper price registry unavailable: %s", type(error).__name__)
            return set()
        recent = set()
        for name in names:
            exchange, _, symbol = name.decode().partition(":")
            recent.add((exchange, symbol))
        return recent


class KiteQuotePriceSource:
    """Prices from Kite quotes through an active session on the tenant's shared Kite app (the sandbox in development).

    One price table per tenant, shared by every process through the cache: a reader takes its prices from it,
    and when the table is older than REFRESH_SECONDS (or lacks an instrument asked for) one reader, under a
    single-flight lock, quotes in one call everything the tenant's paper accounts hold or have orders on, plus
    what readers asked for lately. Kite allows one quote request per second per app, and the app's token bucket
    holds every process to it. When a refresh fails the last table is served: its prices keep their as_of.

    Never another tenant's session, nor a session on a user's own app: quotes spend that session's rate
    budget, and a token error on them ends that customer's session. No such session: MarketDataUnavailable.
    """

    REFRESH_SECONDS = 1 / RATE_LIMITS["quote"]

    def __init__(self, *, tenant):
        self.tenant = tenant
        self._key = caches.paper_prices_key(tenant.slug)
        self._wanted = _WantedInstruments(f"{self._key}:wanted")

    def prices(self, instruments) -> Prices:
        asked = set(instruments)
        if not asked:
            return Prices()
        self._wanted.add(asked)
        table = self._table(asked)
        return Prices({instrument: table.quoted[instrument] for instrument in asked if instrument in table.quoted})

    def _table(self, asked: set[Instrument]) -> _PriceTable:
        try:
            read = self._read(asked, force=False)
            # A table too recent to refresh may predate this ask: then one more call, within the budget. Twice,
            # since a refresh that began before this ask may land while it waits.
            for _ in range(2):
                if read.source == "stale" or asked <= read.data.asked:
                    break
                read = self._read(asked, force=True)
        except BrokerError as error:
            logger.warning("No paper prices from Kite: %s", error.code)
            raise MarketDataUnavailable() from None
        return read.data

    def _read(self, asked, *, force) -> snapshots.LiveRead:
        return snapshots.read_through(
            self._key,
            lambda: self._quote(asked),
            fresh_ttl=self.REFRESH_SECONDS,
            stale_ttl=settings.THOR_LIVE_STALE_SECONDS,
            force=force,
        )

    def _quote(self, asked: set[Instrument]) -> _PriceTable:
        connection = self._connection()
        others = (self._wanted.recent() | self._held_or_ordered()) - asked
        # One call: Kite takes QUOTE_BATCH instruments a request, and what is asked now comes first.
        instruments = [*sorted(asked), *sorted(others)][:QUOTE_BATCH]
        quotes = broker_call(
            connection, lambda adapter: adapter.quotes(_name(instrument) for instrument in instruments)
        )
        now = timezone.now()
        previous = snapshots.peek(self._key)
        kept_since = now - timedelta(seconds=settings.THOR_LIVE_STALE_SECONDS)
        quoted = {
            instrument: price
            for instrument, price in (previous.data.quoted.items() if previous else ())
            if price.as_of >= kept_since
        }
        quoted.update(
            {
                instrument: Quoted(quotes[_name(instrument)].last_price, now)
                for instrument in instruments
                if _name(instrument) in quotes
            }
        )
        return _PriceTable(quoted=quoted, asked=frozenset(instruments))

    def _held_or_ordered(self) -> set[Instrument]:
        paper = {"account__user__tenant": self.tenant, "account__mode": TradingAccount.Mode.PAPER}
        held = PaperPosition.objects.filter(**paper).values_list("exchange", "symbol")
        ordered = Order.objects.filter(**paper).exclude(status__in=Order.TERMINAL_STATUSES)
        return set(held.distinct()) | set(ordered.values_list("exchange", "symbol").distinct())

    def _connection(self) -> BrokerConnection:
        connection = (
            BrokerConnection.objects.filter(
                app__kind=BrokerKind.KITE,
                app__tenant=self.tenant,
                app__owner__isnull=True,
                status=BrokerConnection.Status.ACTIVE,
            )
            .select_related("app")
            .order_by(F("last_sync_at").desc(nulls_last=True))
            .first()
        )
        if connection is None:
            logger.warning("No paper prices from Kite: tenant %s has no active session on its Kite app", self.tenant.pk)
            raise MarketDataUnavailable()
        return connection


def price_source(*, tenant) -> PriceSource:
    """The prices a tenant's paper accounts trade at; a source that uses a broker session uses only the tenant's."""
    kind = settings.THOR_PAPER_PRICE_SOURCE
    if kind == "fixed":
        return FixedPriceSource(settings.THOR_PAPER_FIXED_PRICES)
    if kind == "sandbox":
        return SandboxPriceSource()
    if kind == "kite":
        return KiteQuotePriceSource(tenant=tenant)
    raise ValueError(f"Unknown THOR_PAPER_PRICE_SOURCE {kind!r}")
