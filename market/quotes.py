"""The one quote service: every quote Thor uses (paper fills and valuations, live orders' price bands, analytics
chains) comes from here.

A tenant's quotes (`quote_service(tenant=...)`) come through its market-data connections, one per broker
(`market.selectors.market_data_connection`, looked up only when a call is due: a cached answer costs no query):
US instruments (NASDAQ, NYSE) through its Schwab market-data connection, every other through its Kite one,
one `QuoteService` each, calling through the broker adapter and `broker_call`. Each of them is:

- batched: at most its feed's `batch` instruments a call (market.quote_feeds; Kite: 500, as Kite documents;
  Schwab: 500, the Schwab adapter's QUOTE_BATCH, why there); a call with room left also quotes what was asked
  for lately and what the caller says is worth having (`also`), so one call serves the next readers too;
- budgeted: the adapter spends a token of the app's quote bucket in Redis before each call, so every process
  together stays within it (Kite: one call a second per API key, as Kite documents; Schwab publishes its
  limits only in its developer portal, where an app gets 120 requests a minute by default: its quotes take
  THOR_SCHWAB_QUOTES_PER_MINUTE of them);
- cached: each instrument's quote is kept in the default cache (keys in market.caches), `live` for one period
  of that budget (the feed's `fresh_seconds`: asking sooner could not be answered anyway) and kept
  THOR_LIVE_STALE_SECONDS as the last good one;
- single flight: the calls for a tenant's connection are made under one lock (Redis), and whoever waited for
  it reads what the holder stored before calling for what is still missing, so N processes asking for the
  same instruments at once make one call;
- degrading: when the broker fails (or the budget is spent, or the connection is missing or expired) each
  instrument's last good quote is handed out marked `stale`; with none for any of them, MarketDataUnavailable
  (a 503). A failure keeps readers off the broker for one period;
- patient by default: a reader waits for the lock and for the budget (`Patience`). One that can go on without
  a quote (an order's price band, accounts.price_bands) says how little it may wait: then a lock not had in
  time, or a budget spent, answers what is kept (stale, or MarketDataUnavailable) without a call.

Every quote carries `as_of` (when Thor received it) and `source` (`live` or `stale`). Names are
"EXCHANGE:SYMBOL"; a malformed one is left out without asking the broker, as is one the broker does not know
(asked again once a period has passed, not on every read).
"""

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from django.conf import settings
from django.core.cache import cache

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import Quote
from brokers.models import BrokerConnection, BrokerKind
from brokers.services import broker_call
from market import caches, quote_refresh
from market.quote_feeds import FEEDS, FRESH_SECONDS, KITE_FEED, SCHWAB_FEED, Feed, feed_kind
from market.quote_values import (
    LIVE,
    LOCK_WAIT_SECONDS,
    MAX_INSTRUMENTS,
    PATIENT,
    REFRESHING,
    STALE,
    MarketDataUnavailable,
    MarketQuote,
    Patience,
    TooManyInstruments,
    instrument_name,
    market_quote,
    stored,
    valid_names,
)
from market.selectors import market_data_connection
from thor import coordination

__all__ = [
    "FRESH_SECONDS",
    "LIVE",
    "LOCK_WAIT_SECONDS",
    "MAX_INSTRUMENTS",
    "SCHWAB_FEED",
    "STALE",
    "MarketDataUnavailable",
    "MarketQuote",
    "Patience",
    "QuoteService",
    "Quotes",
    "TenantQuotes",
    "TooManyInstruments",
    "instrument_name",
    "quote_service",
    "valid_names",
]

logger = logging.getLogger("market.quotes")

# How long a holder may keep a connection's lock (then it expires): a holder's calls each wait up to the adapter's
# rate wait for their token and its timeout for the broker (how long a reader waits for it: Patience).
LOCK_SECONDS = 60

Clock = Callable[[], float]
_no_connection_warning: dict[str, coordination.OccasionalWarning] = {}


# Each entry: (received_at epoch seconds, the stored quote, or None when the broker did not know the name).
Entry = tuple[float, dict | None]


class QuoteService:
    """One connection's quotes: `scope` names its cache entries and lock, `connect` finds the market-data
    connection when a call is due (None: there is none), `feed` says how its broker is asked. `clock` (epoch
    seconds) is injectable for tests."""

    def __init__(
        self,
        *,
        scope: str,
        connect: Callable[[], BrokerConnection | None],
        clock: Clock | None = None,
        feed: Feed = KITE_FEED,
    ):
        self.scope = scope
        self.feed = feed
        self._connect = connect
        self._clock = clock or time.time

    @classmethod
    def of(cls, connection: BrokerConnection, *, clock: Clock | None = None) -> "QuoteService":
        """The service calling through this connection, sharing its tenant's cache for its broker."""
        feed = FEEDS[connection.app.kind]
        return cls(scope=_scope(connection.app.tenant_id, feed), connect=lambda: connection, clock=clock, feed=feed)

    def quotes(
        self,
        names: Iterable[object],
        *,
        also: Callable[[], Iterable[str]] | None = None,
        patience: Patience = PATIENT,
    ) -> dict[str, MarketQuote]:
        """The quotes of these "EXCHANGE:SYMBOL" names, keyed by name; what the broker does not know, and
        malformed names, are left out. `also`: names worth quoting in the same call when it has room (asked
        only when a call is made). Raises MarketDataUnavailable when the broker fails (or `patience` ran out)
        and none of them has a last good quote, TooManyInstruments past MAX_INSTRUMENTS."""
        asked = [name for name in valid_names(names) if self.feed.accepts(name)]
        if not asked:
            return {}
        asked_at = self._clock()
        self._remember_wanted(asked)
        known, failed = self._read(asked)
        if not failed and patience.refresh_ahead:
            self._refresh_ageing(asked, known, patience)
        if not failed and self._missing(asked, known, patience):
            with coordination.single_flight(
                caches.quotes_lock_key(self.scope), timeout=LOCK_SECONDS, wait=patience.lock_wait
            ) as held:
                # Whoever held the lock stored its answer before releasing it: only what it did not quote is asked.
                stored_meanwhile, failed = self._read(self._missing(asked, known, patience))
                known.update(stored_meanwhile)
                missing = self._missing(asked, known, patience)
                if missing and not failed and not held and not patience.call_without_lock:
                    logger.info(
                        "Quotes of %s not asked: %s's lock not had in %ss", missing, self.scope, patience.lock_wait
                    )
                    failed = True
                elif missing and not failed:
                    failed = not self._fetch(missing, known, also, patience)
        return self._answer(asked, known, failed, asked_at)

    # --- reading and writing the cache ------------------------------------------------------------------

    def _read(self, names: list[str]) -> tuple[dict[str, Entry], bool]:
        """The kept entries of these names, and whether the broker failed within a fresh period (one round trip)."""
        failed_key = caches.quotes_failed_key(self.scope)
        keys = {caches.quote_key(self.scope, name): name for name in names}
        found = cache.get_many([*keys, failed_key])
        failed_at = found.pop(failed_key, None)
        failed = failed_at is not None and self._clock() - failed_at < self.feed.fresh_seconds
        return {keys[key]: entry for key, entry in found.items()}, failed

    def _missing(self, names: list[str], known: dict[str, Entry], patience: Patience) -> list[str]:
        now, fresh = self._clock(), max(self.feed.fresh_seconds, patience.serves_seconds)
        return [name for name in names if name not in known or now - known[name][0] >= fresh]

    def _refresh_ageing(self, names: list[str], known: dict[str, Entry], patience: Patience) -> None:
        """The kept quotes this ask is served past their fresh period, asked for again off this call."""
        now, fresh = self._clock(), self.feed.fresh_seconds
        ageing = [name for name in names if name in known and fresh <= now - known[name][0] < patience.serves_seconds]
        if ageing:
            quote_refresh.refresh_ahead(self.scope, ageing, self._refreshed)

    def _refreshed(self, names: list[str]) -> None:
        self.quotes(names, patience=REFRESHING)

    def _store(self, entries: dict[str, Entry]) -> None:
        cache.set_many(
            {caches.quote_key(self.scope, name): entry for name, entry in entries.items()},
            settings.THOR_LIVE_STALE_SECONDS,
        )

    def _failed(self) -> None:
        cache.set(caches.quotes_failed_key(self.scope), self._clock(), max(1, round(self.feed.fresh_seconds)))

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

    def _batches(
        self, missing: list[str], also: Callable[[], Iterable[str]] | None, *, pad: bool = True
    ) -> list[list[str]]:
        """`missing` in calls of the feed's batch, the last one filled up (`pad`) with names asked lately and
        `also`'s."""
        batch = self.feed.batch
        room = -len(missing) % batch
        names = list(missing)
        if room and pad:
            extra: list[str] = self._wanted(room + len(missing))
            if also is not None:
                extra += valid_names(list(also())[:MAX_INSTRUMENTS])
            asked = set(missing)
            names += [name for name in dict.fromkeys(extra) if name not in asked and self.feed.accepts(name)][:room]
        return [names[start : start + batch] for start in range(0, len(names), batch)]

    def _fetch(
        self,
        missing: list[str],
        known: dict[str, Entry],
        also: Callable[[], Iterable[str]] | None,
        patience: Patience,
    ) -> bool:
        """Quote `missing` (and the padding) into the cache and `known`; False when a call failed (what the
        calls before it quoted is kept)."""
        connection = self._connect()
        if connection is None:
            # Once a minute a scope: a tenant without one asks on every paper fill and every banded order.
            _no_connection_warning.setdefault(self.scope, coordination.OccasionalWarning(logger))(
                "No %s market-data connection for %s", self.feed.kind, self.scope
            )
            return False
        for batch in self._batches(missing, also, pad=patience.pad):
            try:
                quoted = (
                    self._call(connection, batch) if patience.wait_for_budget else self._call_now(connection, batch)
                )
            except BrokerError as error:
                if error.code == BrokerErrorCode.RATE_LIMITED and not patience.wait_for_budget:
                    # Spent for this moment only: the readers that wait for the budget still get their turn.
                    logger.info("Quotes through connection %s not asked: the budget is spent", connection.pk)
                    return False
                logger.warning("Quotes through connection %s failed: %s", connection.pk, error.code)
                self._failed()
                return False
            received_at = self._clock()
            entries: dict[str, Entry] = {
                name: (received_at, stored(quoted[name]) if name in quoted else None) for name in batch
            }
            self._store(entries)
            known.update(entries)
        return True

    def _call(self, connection: BrokerConnection, batch: list[str]) -> dict[str, Quote]:
        """One upstream call. The adapter waits up to its rate wait for the app's quote token; a call right after
        another (the next batch, or another process's) needs a whole period, which that wait can miss by a
        hair: it is asked once more, waiting again, before the budget counts as spent."""
        for attempt in range(2):
            try:
                return broker_call(connection, lambda adapter: adapter.quotes(batch))
            except BrokerError as error:
                if error.code != BrokerErrorCode.RATE_LIMITED or attempt:
                    raise
        raise AssertionError("unreachable")

    def _call_now(self, connection: BrokerConnection, batch: list[str]) -> dict[str, Quote]:
        """One upstream call if the budget has a token now (else RATE_LIMITED at once), for a caller that goes on
        without the quote rather than wait."""
        return broker_call(connection, lambda adapter: adapter.quotes(batch, wait_for_budget=False))

    def _answer(
        self, asked: list[str], known: dict[str, Entry], failed: bool, asked_at: float
    ) -> dict[str, MarketQuote]:
        """Live: fresh when asked for, or quoted since (an ask of several calls waits a period for each one
        after the first, and its first calls' quotes are no less live for it). Stale: the last good quote."""
        answer, fresh = {}, self.feed.fresh_seconds
        for name in asked:
            received_at, kept = known.get(name, (0.0, None))
            # Kept no longer than THOR_LIVE_STALE_SECONDS by this clock too (the cache's TTL runs on its own).
            if kept is None or asked_at - received_at >= settings.THOR_LIVE_STALE_SECONDS:
                continue
            answer[name] = market_quote(name, kept, received_at, LIVE if asked_at - received_at < fresh else STALE)
        if failed and not answer:
            raise MarketDataUnavailable()
        return answer


_registry_down = coordination.OccasionalWarning(logger)


def _scope(tenant_id: int, feed: Feed) -> str:
    # Kite's scope keeps the name it had before US quotes came through Schwab: its cached quotes stay readable.
    return f"tenant-{tenant_id}" if feed is KITE_FEED else f"tenant-{tenant_id}-{feed.kind}"


class Quotes(Protocol):
    def quotes(
        self,
        names: Iterable[object],
        *,
        also: Callable[[], Iterable[str]] | None = None,
        patience: Patience = PATIENT,
    ) -> dict[str, MarketQuote]: ...


class TenantQuotes:
    """A tenant's quotes from all its market-data connections: each name goes to its broker's service
    (`feed_kind`), one ask may mix them. Where one broker failed without a last good quote and the other
    answered, the answer holds what the other quoted; MarketDataUnavailable only when nothing could be had."""

    def __init__(self, services: dict[str, QuoteService]):
        self.services = services

    def quotes(
        self,
        names: Iterable[object],
        *,
        also: Callable[[], Iterable[str]] | None = None,
        patience: Patience = PATIENT,
    ) -> dict[str, MarketQuote]:
        by_kind: dict[str, list[str]] = {}
        for name in valid_names(names):
            by_kind.setdefault(feed_kind(name), []).append(name)
        also_once = _once(also) if also is not None else None
        answer: dict[str, MarketQuote] = {}
        unavailable: MarketDataUnavailable | None = None
        for kind, asked in by_kind.items():
            extra = None if also_once is None else _of_kind(also_once, kind)
            try:
                answer.update(self.services[kind].quotes(asked, also=extra, patience=patience))
            except MarketDataUnavailable as error:
                unavailable = error
        if unavailable is not None and not answer:
            raise unavailable
        return answer


def _once(also: Callable[[], Iterable[str]]) -> Callable[[], list[str]]:
    """`also` asked at most once, however many brokers' calls want it (it may cost a query)."""
    kept: list[list[str]] = []

    def names() -> list[str]:
        if not kept:
            kept.append([name for name in list(also())[:MAX_INSTRUMENTS] if isinstance(name, str)])
        return kept[0]

    return names


def _of_kind(also: Callable[[], list[str]], kind: str) -> Callable[[], list[str]]:
    return lambda: [name for name in also() if feed_kind(name) == kind]


def _connector(tenant, kind: str) -> Callable[[], BrokerConnection | None]:
    return lambda: market_data_connection(tenant=tenant, kind=kind)


def quote_service(*, tenant=None, tenant_slug: str = "", clock: Clock | None = None) -> TenantQuotes:
    """The quotes of a tenant (by tenant: its connections are looked up when a call is due), or of the tenant
    with this slug (neither: of any tenant), whose Kite market-data connection is looked up now:
    MarketDataUnavailable when it has none (the analytics' chains, Indian instruments only)."""
    if tenant is not None:
        return TenantQuotes(
            {
                kind: QuoteService(
                    scope=_scope(tenant.pk, feed),
                    connect=_connector(tenant, kind),
                    clock=clock,
                    feed=feed,
                )
                for kind, feed in FEEDS.items()
            }
        )
    connection = market_data_connection(tenant_slug=tenant_slug)
    if connection is None:
        logger.warning("No kite market-data connection for %s", tenant_slug or "any tenant")
        raise MarketDataUnavailable()
    tenant_id = connection.app.tenant_id
    return TenantQuotes(
        {
            BrokerKind.KITE: QuoteService.of(connection, clock=clock),
            BrokerKind.SCHWAB: QuoteService(
                scope=_scope(tenant_id, SCHWAB_FEED),
                connect=_connector(tenant_id, BrokerKind.SCHWAB),
                clock=clock,
                feed=SCHWAB_FEED,
            ),
        }
    )
