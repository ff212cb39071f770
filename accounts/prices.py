"""Where paper accounts get their prices: one `PriceSource` per tenant, chosen by `THOR_PAPER_PRICE_SOURCE`.

`kite`: the market's quote service through the tenant's market-data connections (its session on its shared Kite
app for Indian instruments, its login on its shared Schwab app for US ones: the brokers in production, the
broker sandbox in development, the same code); `fixed`: a table (tests), with a book where an entry
gives one.
Every price carries the time it was quoted (`Prices`): a reader that shows it says `stale`, never `live`, once
it is older than THOR_LIVE_FRESH_SECONDS.
"""

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from accounts.models import Order, PaperPosition, TradingAccount
from brokers.adapters.types import DepthLevel
from market.quotes import MarketDataUnavailable, MarketQuote, instrument_name, quote_service
from thor.money import is_market_price

__all__ = ["MarketDataUnavailable", "PriceSource", "Prices", "Quoted", "price_source"]

logger = logging.getLogger("accounts.prices")

Instrument = tuple[str, str]  # (exchange, symbol)


@dataclass(frozen=True)
class Quoted:
    price: Decimal
    as_of: datetime
    # The whole quote (the book's depth among it) where the price came from the quote service.
    quote: MarketQuote | None = field(default=None, compare=False)


class Prices(Mapping[Instrument, Decimal]):
    """Last prices keyed by (exchange, symbol), each with the time it was quoted; unpriced instruments are absent.

    A mapping of prices (`prices[instrument]`, `.get`, `in`), so callers that only fill at a price read it
    as they would a dict; `as_of_for` and `is_fresh` are for the readers that show it.
    """

    def __init__(self, quoted: Mapping[Instrument, Quoted] | None = None):
        # A price no order could trade at (zero, negative, no number) leaves its instrument unpriced: nothing fills,
        # marks or values at it.
        self._quoted = {instrument: q for instrument, q in (quoted or {}).items() if is_market_price(q.price)}
        self._marks: Mapping[Instrument, Decimal] | None = None

    def with_marks(self, marks: Mapping[Instrument, Decimal]) -> "Prices":
        """These prices, with the marks an account's open shorts and resting orders are reckoned at (what its funds
        mark them at: accounts.paper_funds.paper_marks), which may differ from the prices an order fills at."""
        marked = Prices(self._quoted)
        marked._marks = dict(marks)
        return marked

    def marks(self) -> Mapping[Instrument, Decimal]:
        """What open shorts and resting orders are marked at: the marks given (`with_marks`), else these prices."""
        return self if self._marks is None else self._marks

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

    def quote_for(self, instrument: Instrument) -> MarketQuote | None:
        """The instrument's whole quote (its book, best levels first), where the source gives one."""
        quoted = self._quoted.get(instrument)
        return None if quoted is None else quoted.quote

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


def _name(instrument: Instrument) -> str:
    return instrument_name(*instrument)


class PriceSource(Protocol):
    def prices(self, instruments: Iterable[Instrument]) -> Prices:
        """Last prices of these instruments with their as_of; instruments without a price are left out."""


class FixedPriceSource:
    """Prices from a table `{"NSE:INFY": "1500.00"}` (settings `THOR_PAPER_FIXED_PRICES`): always fresh, quoted
    anew at each read. An entry may carry a book as well, `{"last_price": "1500.00", "bids": [["1499.95", 40],
    ...], "asks": [["1500.05", 25], ...]}` (price, quantity; best first), handed out as the quote's depth."""

    def __init__(self, table: Mapping[str, object]):
        self.table = {tuple(key.split(":", 1)): entry for key, entry in table.items()}

    def prices(self, instruments) -> Prices:
        now = timezone.now()
        return Prices(
            {
                instrument: _fixed_quoted(instrument, self.table[instrument], now)
                for instrument in instruments
                if instrument in self.table
            }
        )


def _fixed_quoted(instrument: Instrument, entry: object, as_of: datetime) -> Quoted:
    if not isinstance(entry, Mapping):
        return Quoted(Decimal(str(entry)), as_of)
    exchange, symbol = instrument
    price = Decimal(str(entry["last_price"]))

    def levels(side: str) -> tuple[DepthLevel, ...]:
        return tuple(DepthLevel(Decimal(str(level[0])), int(level[1])) for level in entry.get(side) or ())

    quote = MarketQuote(
        exchange=exchange,
        symbol=symbol,
        last_price=price,
        as_of=as_of,
        source="live",
        bids=levels("bids"),
        asks=levels("asks"),
    )
    return Quoted(price, as_of, quote)


class MarketPriceSource:
    """Prices from the market's quote service through the tenant's market-data connections (its active sessions on
    its shared Kite and Schwab apps: the sandbox's in development, seeded by `seed_demo`).

    The service keeps each instrument's quote for every process and quotes at most once a budget period; each
    call it makes also quotes what the tenant's paper accounts hold or have orders on, so one call serves the
    next readers. Never another tenant's session, nor a session on a user's own app. No session, or a failing
    broker without a last good quote: MarketDataUnavailable.
    """

    def __init__(self, *, tenant):
        self.tenant = tenant

    def prices(self, instruments) -> Prices:
        asked = {_name(instrument): instrument for instrument in instruments}
        if not asked:
            return Prices()
        quotes = quote_service(tenant=self.tenant).quotes(list(asked), also=self._held_or_ordered)
        return Prices({asked[name]: Quoted(quote.last_price, quote.as_of, quote) for name, quote in quotes.items()})

    def _held_or_ordered(self) -> list[str]:
        paper = {"account__user__tenant": self.tenant, "account__mode": TradingAccount.Mode.PAPER}
        held = PaperPosition.objects.filter(**paper).exclude(quantity=0).values_list("exchange", "symbol")
        ordered = Order.objects.filter(**paper).exclude(status__in=Order.TERMINAL_STATUSES)
        instruments = set(held.distinct()) | set(ordered.values_list("exchange", "symbol").distinct())
        return [_name(instrument) for instrument in sorted(instruments)]


def price_source(*, tenant) -> PriceSource:
    """The prices a tenant's paper accounts trade at; a source that uses a broker session uses only the tenant's."""
    kind = settings.THOR_PAPER_PRICE_SOURCE
    if kind == "fixed":
        return FixedPriceSource(settings.THOR_PAPER_FIXED_PRICES)
    if kind == "kite":
        return MarketPriceSource(tenant=tenant)
    raise ValueError(f"Unknown THOR_PAPER_PRICE_SOURCE {kind!r}")
