import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from brokers.models import BrokerConnection, BrokerKind
from brokers.services.market_data import MARKET_DATA_EMAIL_SUFFIX
from market.caches import MISSING, instrument_cached, instrument_remember, last_prices_read
from market.models import Instrument
from thor.coordination import OccasionalWarning

_store_down = OccasionalWarning(logging.getLogger("market.selectors"))


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


def underlying_future(*, exchange: str, name: str, expiry: date) -> str | None:
    """The future an option on `exchange` settles against where no index or stock underlies it (MCX's options on
    futures, currency options): the same name's future expiring first on or after the option's `expiry`."""
    futures = Instrument.objects.filter(exchange=exchange, name=name, instrument_type="FUT", expiry__gte=expiry)
    return futures.order_by("expiry").values_list("tradingsymbol", flat=True).first()


@dataclass(frozen=True)
class LastPrice:
    """A token's last traded price as the market stream last heard it (`received_at`: epoch seconds)."""

    last_price: Decimal
    received_at: float
    source: str = "kite_ticker"

    @property
    def as_of(self) -> datetime:
        return datetime.fromtimestamp(self.received_at, tz=UTC)

    def is_fresh(self, *, now: datetime | None = None) -> bool:
        """Heard within THOR_LIVE_FRESH_SECONDS: what a read may call `live` (as accounts.prices does a quote)."""
        return (now or timezone.now()) - self.as_of <= timedelta(seconds=settings.THOR_LIVE_FRESH_SECONDS)


def last_prices(tokens: Iterable[int]) -> dict[int, LastPrice]:
    """The stream's last price of each token it has heard; tokens it has not are left out."""
    return {
        token: LastPrice(last_price=Decimal(entry["last_price"]), received_at=float(entry["received_at"]))
        for token, entry in last_prices_read(tokens).items()
    }


def market_data_candidates(*, kind: str = BrokerKind.KITE) -> QuerySet[BrokerConnection]:
    """Every connection that can carry market data from `kind`'s broker: an active session (a token to call
    with) on a shared app of that kind, any tenant's."""
    return BrokerConnection.objects.filter(
        app__kind=kind, app__owner__isnull=True, status=BrokerConnection.Status.ACTIVE
    ).exclude(access_token="")


def tenants_with_market_data(tenant_ids: Iterable[int], *, kind: str = BrokerKind.KITE) -> set[int]:
    """Those of the tenants that have a market-data connection from `kind`'s broker now (one
    `market_data_connection` would find), in one query."""
    return set(
        market_data_candidates(kind=kind)
        .filter(app__tenant_id__in=set(tenant_ids))
        .order_by()
        .values_list("app__tenant_id", flat=True)
        .distinct()
    )


def tenant_has_market_data(tenant_ref: OuterRef, *, kind: str = BrokerKind.KITE) -> Exists:
    """The same, as a condition on a tenant in an outer query (`tenant_ref`: its id there)."""
    return Exists(market_data_candidates(kind=kind).filter(app__tenant_id=tenant_ref))


def market_data_connection(
    *, tenant=None, tenant_slug: str = "", kind: str = BrokerKind.KITE
) -> BrokerConnection | None:
    """The connection a tenant's market data from `kind`'s broker comes through (Kite: Indian instruments; Schwab:
    US ones): the most recently synced active session on one of its shared apps of that kind (never a user's own
    app, whose rate budget and session are the customer's). Without a tenant, any tenant's (the analytics and the
    stream of a single-tenant installation)."""
    connections = market_data_candidates(kind=kind)
    if tenant is not None:
        connections = connections.filter(app__tenant=tenant)
    if tenant_slug:
        connections = connections.filter(app__tenant__slug=tenant_slug)
    # The tenant's own market-data login first (brokers.services.market_data: a user nobody signs in as), then
    # the most recently used: a customer's session on the shared app may have ended at the broker unseen.
    own_login = Case(When(user__email__endswith=MARKET_DATA_EMAIL_SUFFIX, then=Value(0)), default=Value(1))
    return connections.select_related("app").order_by(own_login, F("last_sync_at").desc(nulls_last=True), "-id").first()


def instrument_token(*, exchange: str, tradingsymbol: str) -> int | None:
    """The master's streaming token for the instrument (None: not listed, or not on Kite's stream)."""
    instrument = instrument_get(exchange=exchange, tradingsymbol=tradingsymbol)
    return None if instrument is None else instrument.instrument_token


def instrument_tokens(instruments: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The streaming token of each (exchange, tradingsymbol) the master lists with one, in one query: names a
    client typed are looked up here, not through the per-process cache, which would keep every miss."""
    query = Q()
    for exchange, tradingsymbol in set(instruments):
        query |= Q(exchange=exchange, tradingsymbol=tradingsymbol)
    if not query:
        return {}
    rows = Instrument.objects.filter(query, instrument_token__isnull=False)
    return {
        (exchange, tradingsymbol): token
        for exchange, tradingsymbol, token in rows.values_list("exchange", "tradingsymbol", "instrument_token")
        if token is not None
    }


def instrument_last_prices(instruments: Iterable[tuple[str, str]]) -> dict[tuple[str, str], LastPrice]:
    """The stream's last price of each (exchange, tradingsymbol) it has heard: one read of the store for all.

    A store that cannot be read gives none (logged at most once a minute): a read then shows the quotes.
    """
    tokens = {}
    for exchange, tradingsymbol in instruments:
        token = instrument_token(exchange=exchange, tradingsymbol=tradingsymbol)
        if token is not None:
            tokens[token] = (exchange, tradingsymbol)
    if not tokens:
        return {}
    try:
        heard = last_prices(tokens)
    except Exception as error:
        _store_down("Could not read the market stream's last prices: %s", type(error).__name__)
        return {}
    return {tokens[token]: price for token, price in heard.items()}
