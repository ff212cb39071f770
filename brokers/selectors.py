from django.db.models import QuerySet

from brokers.models import BrokerConnection, BrokerKind


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
