"""The broker connections' health (brokers.health) as Prometheus gauges on /metrics.

They are read when /metrics is scraped, from the database and the cache, so every process answers the
same figures (the call counter, brokers.health.CALLS, is each process's own, as counters are). Labels
carry ids and kinds only. The connections shown are those that still matter to an operator: active,
expired or in error (a revoked one has no session left, and the list of them only grows).
"""

import logging

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY

from brokers import health
from brokers.models import BrokerConnection
from thor.coordination import OccasionalWarning

logger = logging.getLogger("thor.brokers")
_read_failed = OccasionalWarning(logger)

WATCHED = (BrokerConnection.Status.ACTIVE, BrokerConnection.Status.EXPIRED, BrokerConnection.Status.ERROR)
CONNECTION = ["broker", "connection_id"]
HEALTH_FIELDS = (
    "id",
    "status",
    "access_expires_at",
    "order_egress",
    "order_egress_probe",
    "app__id",
    "app__kind",
    "app__owner",
    "app__order_egress",
    "app__order_egress_probe",
    "app__tenant__id",
    "app__tenant__live_orders_require_egress",
    "app__tenant__order_egress",
    "app__tenant__order_egress_probe",
)


def _families() -> dict[str, GaugeMetricFamily]:
    gauge = GaugeMetricFamily
    return {
        "success": gauge(
            "thor_broker_connection_last_success_timestamp_seconds",
            "When the connection's last broker call succeeded.",
            labels=CONNECTION,
        ),
        "error": gauge(
            "thor_broker_connection_last_error_timestamp_seconds",
            "When the connection's last broker call failed, labelled by its error code.",
            labels=[*CONNECTION, "code"],
        ),
        "failing": gauge(
            "thor_broker_connection_failing",
            "1 when the connection's last recorded broker call failed.",
            labels=CONNECTION,
        ),
        "expiry": gauge(
            "thor_broker_connection_token_expiry_timestamp_seconds",
            "When the connection's access token ends.",
            labels=CONNECTION,
        ),
        "orders": gauge(
            "thor_broker_connection_orders_needing_attention",
            "Live orders of the connection in status UNKNOWN or NEEDS_REVIEW.",
            labels=[*CONNECTION, "status"],
        ),
        "price_bands": gauge(
            "thor_broker_connection_price_bands_checked",
            "1 when the connection's live orders are checked against their price band (its tenant has a Kite "
            "market-data connection), 0 when they go unchecked; Kite connections only.",
            labels=CONNECTION,
        ),
        "budget": gauge(
            "thor_broker_rate_budget_left",
            "Calls the app can send now, per rate bucket its adapter spends (its connections share them).",
            labels=["broker", "app_id", "bucket"],
        ),
    }


class ConnectionHealthCollector:
    def describe(self):
        # Names only: registering must not read the database.
        return list(_families().values())

    def collect(self):
        families = _families()
        try:
            connections = list(
                BrokerConnection.objects.filter(status__in=WATCHED)
                .select_related("app__tenant")
                # What the health reads (its egress and price bands too) and no token: a field left out here
                # would be read back one query per connection.
                .only(*HEALTH_FIELDS)
                .order_by("id")
            )
            read = health.connections_health(connections)
        except Exception as error:
            # A scrape must answer with what it has (the request series) even when this read fails.
            _read_failed("Broker health metrics unavailable: %s", type(error).__name__)
            return list(families.values())
        budgets_seen: set[int] = set()
        for connection in connections:
            _add(families, connection, read[connection.pk], budgets_seen)
        return list(families.values())


def _add(families, connection: BrokerConnection, found: health.ConnectionHealth, budgets_seen: set[int]) -> None:
    labels = [connection.app.kind, str(connection.pk)]
    if found.last_success_at:
        families["success"].add_metric(labels, found.last_success_at.timestamp())
    if found.last_error:
        families["error"].add_metric([*labels, found.last_error.code], found.last_error.at.timestamp())
    if found.calls != "unknown":
        families["failing"].add_metric(labels, 1.0 if found.calls == "failing" else 0.0)
    if found.token_expires_at:
        families["expiry"].add_metric(labels, found.token_expires_at.timestamp())
    if found.orders is not None:
        families["orders"].add_metric([*labels, "UNKNOWN"], found.orders.unknown)
        families["orders"].add_metric([*labels, "NEEDS_REVIEW"], found.orders.needs_review)
    if found.price_bands is not None:
        families["price_bands"].add_metric(labels, 1.0 if found.price_bands == health.PriceBands.CHECKED else 0.0)
    if connection.app_id not in budgets_seen:
        budgets_seen.add(connection.app_id)
        for budget in found.rate_budget:
            if budget.left is not None:
                families["budget"].add_metric([connection.app.kind, str(connection.app_id), budget.bucket], budget.left)


_registered: list[ConnectionHealthCollector] = []


def register() -> None:
    """Called from BrokersConfig.ready; a second call changes nothing."""
    if not _registered:
        _registered.append(ConnectionHealthCollector())
        REGISTRY.register(_registered[0])
