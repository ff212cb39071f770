from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F

from brokers.models import BrokerConnection, BrokerKind
from market.caches import MISSING, instrument_cached, instrument_remember, last_prices_read
from market.models import Instrument


def instrument_get(*, exchange: str, tradingsymbol: str) -> Instrument | None:
    """The master's row for EXCHANGE:TRADINGSYMBOL (expired ones too), or None when it lists no such contract.

    Read-only: the row may be shared with other callers in this process (market.caches).
    """
    key = (exchange, tradingsymbol)
    cached = instrument_cached(key)
    if cached is not MISSING:
        return cached
    found = Instrument.objects.filter(exchange=exchange, tradingsymbol=tradingsymbol).first()
    instrument_remember(key, found)
    return found


@dataclass(frozen=True)
class LastPrice:
    """A token's last traded price as the market stream last heard it (`received_at`: epoch seconds)."""

    last_price: Decimal
    received_at: float
    source: str = "kite_ticker"


def last_prices(tokens: Iterable[int]) -> dict[int, LastPrice]:
    """The stream's last price of each token it has heard; tokens it has not are left out."""
    return {
        token: LastPrice(last_price=Decimal(entry["last_price"]), received_at=float(entry["received_at"]))
        for token, entry in last_prices_read(tokens).items()
    }


def market_data_connection(*, tenant=None, tenant_slug: str = "") -> BrokerConnection | None:
    """The connection a tenant's market data comes through: the most recently synced active session on one of
    its shared Kite apps (never a user's own app, whose rate budget and session are the customer's). Without a
    tenant, any tenant's (the analytics and the stream of a single-tenant installation)."""
    connections = BrokerConnection.objects.filter(
        app__kind=BrokerKind.KITE, app__owner__isnull=True, status=BrokerConnection.Status.ACTIVE
    ).exclude(access_token="")
    if tenant is not None:
        connections = connections.filter(app__tenant=tenant)
    if tenant_slug:
        connections = connections.filter(app__tenant__slug=tenant_slug)
    return connections.select_related("app").order_by(F("last_sync_at").desc(nulls_last=True), "-id").first()
