"""What brokers.health asks of accounts: how many of each connection's live orders need someone.

Registered from AccountsConfig.ready, so brokers (below accounts) never names accounts' models or statuses.
"""

from django.db.models import Count

from accounts.models import Order
from brokers.health import AttentionOrders

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
