"""Where chain snapshots get their quotes: the market's quote service (market.quotes), the one paper trading
uses, through the market-data connection of THOR_ANALYTICS_TENANT's (else the most recently synced of any
tenant's) shared Kite app: Kite in production, the broker sandbox's Kite in development (`seed_demo` links it).

The service batches (500 instruments a call), budgets (the app's quote bucket: one call a second across every
process) and caches; a snapshot takes only live quotes: when the broker fails it would hand out the last good
ones, marked stale, which a snapshot stamped now must not store.
"""

from collections.abc import Sequence
from typing import Protocol

from django.conf import settings

from market.quotes import LIVE, MarketDataUnavailable, MarketQuote, Quotes, quote_service
from thor.upstream import UpstreamError, UpstreamErrorCode


class ChainQuoteSource(Protocol):
    def quotes(self, names: Sequence[str]) -> dict[str, dict]:
        """Kite-shaped full quotes ("NFO:NIFTY25DEC24000CE" -> last_price, volume, oi, depth); unknown names are
        left out."""


def _unavailable(reason: str) -> UpstreamError:
    return UpstreamError(f"Chain quotes unavailable: {reason}", code=UpstreamErrorCode.UNAVAILABLE)


def _levels(levels) -> list[dict]:
    return [{"price": float(level.price), "quantity": level.quantity, "orders": level.orders} for level in levels]


def _chain_quote(quote: MarketQuote) -> dict:
    return {
        "last_price": float(quote.last_price),
        "volume": quote.volume,
        "oi": quote.oi,
        "depth": {"buy": _levels(quote.bids), "sell": _levels(quote.asks)},
    }


class MarketChainQuotes:
    def __init__(self, service: Quotes):
        self.service = service

    def quotes(self, names: Sequence[str]) -> dict[str, dict]:
        try:
            quoted = self.service.quotes(names)
        except MarketDataUnavailable:
            raise _unavailable("the broker failed") from None
        if any(quote.source != LIVE for quote in quoted.values()):
            raise _unavailable("the broker failed; only stale quotes are kept")
        return {name: _chain_quote(quote) for name, quote in quoted.items()}


def chain_quote_source() -> ChainQuoteSource:
    try:
        return MarketChainQuotes(quote_service(tenant_slug=settings.THOR_ANALYTICS_TENANT))
    except MarketDataUnavailable:
        raise _unavailable("no active session on a tenant's shared Kite app") from None
