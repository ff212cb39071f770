from django.db.models import Case, QuerySet, Value, When

from brokers.models import BrokerConnection, BrokerKind
from brokers.services.market_data import MARKET_DATA_EMAIL_SUFFIX


def connection_list(*, user) -> QuerySet[BrokerConnection]:
    return BrokerConnection.objects.filter(user=user).select_related("app__tenant").order_by("-updated_at", "-id")


def connection_get(*, user, connection_id: int) -> BrokerConnection | None:
    return connection_list(user=user).filter(pk=connection_id).first()


def kite_connection_get(*, user) -> BrokerConnection | None:
    """The user's Kite connection that seed 003's aliases speak for: the active one, else the latest still linked."""
    linked = (
        connection_list(user=user)
        .filter(app__kind=BrokerKind.KITE)
        .exclude(broker_user_id="")
        .exclude(status=BrokerConnection.Status.REVOKED)
    )
    return linked.filter(status=BrokerConnection.Status.ACTIVE).first() or linked.first()


def market_data_sessions(apps) -> dict[int, BrokerConnection]:
    """Each shared app's market-data session (brokers.services.market_data: its tenant's market-data user's
    active connection on it, else its latest), by app id, in one query; apps without one are left out."""
    shared = [app.pk for app in apps if app.owner_id is None]
    sessions: dict[int, BrokerConnection] = {}
    active_first = Case(When(status=BrokerConnection.Status.ACTIVE, then=Value(0)), default=Value(1))
    connections = (
        BrokerConnection.objects.filter(app_id__in=shared, user__email__endswith=MARKET_DATA_EMAIL_SUFFIX)
        .select_related("app__tenant", "user")
        # The active one first: a session a later login replaced is updated (ended) after the one replacing it.
        .order_by("app_id", active_first, "-updated_at", "-id")
    )
    for connection in connections:
        # Only the app's own tenant's market-data user (its address names the tenant).
        if connection.user.tenant_id == connection.app.tenant_id:
            sessions.setdefault(connection.app_id, connection)
    return sessions
