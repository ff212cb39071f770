"""What brokers.health asks of accounts: how many of each connection's live orders need someone, and whether
they are checked against their price band (accounts.price_bands) before they are sent.

Registered from AccountsConfig.ready, so brokers (below accounts) never names accounts' models or statuses.
"""

from collections.abc import Sequence

from django.db.models import Count, Exists, OuterRef

from accounts.models import Order, TradingAccount
from brokers.health import AttentionOrders, PriceBands, PriceBandsWatch
from brokers.models import BrokerConnection, BrokerKind
from market.selectors import tenant_has_market_data, tenants_with_market_data

UNKNOWN = Order.Status.UNKNOWN.value
NEEDS_REVIEW = Order.Status.NEEDS_REVIEW.value


def connection_attention_orders(connection_ids: list[int]) -> dict[int, AttentionOrders]:
    """UNKNOWN and NEEDS_REVIEW orders of each connection's accounts, in one query (the (account, status)
    index); connections with none are left out."""
    rows = (
        Order.objects.filter(account__connection_id__in=connection_ids, status__in=(UNKNOWN, NEEDS_REVIEW))
        .order_by()
        .values_list("account__connection_id", "status")
        .annotate(count=Count("pk"))
    )
    counts: dict[int, dict[str, int]] = {}
    for connection_id, status, count in rows:
        counts.setdefault(connection_id, {})[status] = count
    return {
        connection_id: AttentionOrders(unknown=by_status.get(UNKNOWN, 0), needs_review=by_status.get(NEEDS_REVIEW, 0))
        for connection_id, by_status in counts.items()
    }


# Price bands apply to live orders on Indian exchanges, which go through Kite; the reference quote comes
# through the tenant's Kite market-data connection (accounts.price_bands: without one, no check).
BANDED_KIND = BrokerKind.KITE


def connection_price_bands(connections: Sequence[BrokerConnection]) -> dict[int, str]:
    """Whether each Kite connection's orders are checked against their band now: its tenant (its app's, whose
    users link through it) has a Kite market-data connection. One query; other brokers' connections left out."""
    banded = [connection for connection in connections if connection.app.kind == BANDED_KIND]
    if not banded:
        return {}
    checked = tenants_with_market_data({connection.app.tenant_id for connection in banded}, kind=BANDED_KIND)
    return {
        connection.pk: PriceBands.CHECKED
        if connection.app.tenant_id in checked
        else PriceBands.UNCHECKED_NO_MARKET_DATA
        for connection in banded
    }


def tenant_has_banded_accounts() -> Exists:
    """A tenant (OuterRef("pk")) has live accounts on a Kite connection still linked (not revoked)."""
    return Exists(
        TradingAccount.objects.filter(
            user__tenant_id=OuterRef("pk"), mode=TradingAccount.Mode.LIVE, connection__app__kind=BANDED_KIND
        ).exclude(connection__status=BrokerConnection.Status.REVOKED)
    )


def tenant_has_kite_market_data() -> Exists:
    return tenant_has_market_data(OuterRef("pk"), kind=BANDED_KIND)


PRICE_BANDS_WATCH = PriceBandsWatch(
    of_connections=connection_price_bands,
    tenant_has_banded_accounts=tenant_has_banded_accounts,
    tenant_has_market_data=tenant_has_kite_market_data,
)
