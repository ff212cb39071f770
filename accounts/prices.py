"""Where paper accounts get their prices: one `PriceSource` per tenant, chosen by `THOR_PAPER_PRICE_SOURCE`.

The broker sandbox's moving prices (development), Kite quotes through a session on the tenant's own Kite
app (production), or a fixed table (tests).
"""

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Protocol

import requests
from django.conf import settings
from django.db.models import F
from rest_framework import status

from brokers.adapters.errors import BrokerError
from brokers.models import BrokerConnection, BrokerKind
from brokers.services import broker_call
from thor.errors import ApplicationError

logger = logging.getLogger("accounts.prices")


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


class KiteQuotePriceSource:
    """Prices from Kite quotes through an active session on the tenant's shared Kite app (the sandbox in development).

    Never another tenant's session, nor a session on a user's own app: quotes spend that session's rate
    budget, and a token error on them ends that customer's session. No such session: MarketDataUnavailable.
    """

    def __init__(self, *, tenant):
        self.tenant = tenant

    def prices(self, instruments) -> dict[tuple[str, str], Decimal]:
        instruments = list(instruments)
        if not instruments:
            return {}
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
        try:
            quotes = broker_call(
                connection, lambda adapter: adapter.quotes(f"{exchange}:{symbol}" for exchange, symbol in instruments)
            )
        except BrokerError as error:
            logger.warning("No paper prices from Kite: %s", error.code)
            raise MarketDataUnavailable() from None
        return {
            (exchange, symbol): quotes[f"{exchange}:{symbol}"].last_price
            for exchange, symbol in instruments
            if f"{exchange}:{symbol}" in quotes
        }


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
