"""Setting and clearing an order egress (brokers.egress): the URL is checked, stored encrypted, and probed."""

from rest_framework import status

from brokers.egress import egress_probe, order_egress_clean
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from identity.models import Tenant
from thor.errors import ApplicationError

# What can carry an order egress: a connection, a user's own app, a tenant.
EgressHolder = BrokerConnection | BrokerApp | Tenant


def _save(holder: EgressHolder, fields: list[str]) -> None:
    if any(field.name == "updated_at" for field in holder._meta.concrete_fields):
        fields = [*fields, "updated_at"]
    holder.save(update_fields=fields)


def order_egress_set(*, holder: EgressHolder, url: str) -> dict:
    """Store `url` as the egress of `holder` (a connection, a user's own app or a tenant) once it passes
    brokers.egress.order_egress_clean, with a probe through it; returns the probe."""
    clean = order_egress_clean(url)
    holder.order_egress = clean
    holder.order_egress_probe = egress_probe(clean)
    _save(holder, ["order_egress", "order_egress_probe"])
    return holder.order_egress_probe


def order_egress_clear(*, holder: EgressHolder) -> None:
    holder.order_egress = ""
    holder.order_egress_probe = {}
    _save(holder, ["order_egress", "order_egress_probe"])


def order_egress_reprobe(*, holder: EgressHolder) -> dict:
    """Probe the stored egress again (the admin's action), keeping the result."""
    holder.order_egress_probe = egress_probe(holder.order_egress) if holder.order_egress else {}
    _save(holder, ["order_egress_probe"])
    return holder.order_egress_probe


def connection_order_egress_set(*, connection: BrokerConnection, url: str) -> dict:
    if connection.app.kind != BrokerKind.KITE:
        raise ApplicationError(
            "Only Kite connections take an order egress.", code="invalid", status_code=status.HTTP_400_BAD_REQUEST
        )
    return order_egress_set(holder=connection, url=url)
