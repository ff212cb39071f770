"""The connections' health on /metrics: gauges labelled by broker and ids only, never a token."""

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY, generate_latest

from brokers import metrics
from brokers.models import BrokerKind
from brokers.services import broker_call
from brokers.tests.factories import BrokerAppFactory, linked_kite_account, order
from brokers.tests.sandbox_fixtures import link, sandbox_fault

pytestmark = pytest.mark.django_db


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, {key: str(value) for key, value in labels.items()})


def test_a_failed_then_a_good_call_are_counted_and_timed(sandbox, alice_client, anon_client):
    connection = link(alice_client).connection
    labels = {"broker": "kite", "connection_id": connection.pk}
    calls_before = sample("thor_broker_calls_total", broker="kite", outcome="unavailable") or 0
    sandbox_fault(sandbox, kind="5xx", path="/user/profile", count=1)
    with pytest.raises(Exception, match="unavailable"):
        broker_call(connection, lambda adapter: adapter.profile())

    assert sample("thor_broker_connection_failing", **labels) == 1
    assert sample("thor_broker_connection_last_error_timestamp_seconds", **labels, code="unavailable") > 0
    assert sample("thor_broker_calls_total", broker="kite", outcome="unavailable") == calls_before + 1

    broker_call(connection, lambda adapter: adapter.profile())

    assert sample("thor_broker_connection_failing", **labels) == 0
    assert sample("thor_broker_connection_last_success_timestamp_seconds", **labels) > 0
    text = anon_client.get("/metrics").content.decode()
    assert f'thor_broker_connection_failing{{broker="kite",connection_id="{connection.pk}"}} 0.0' in text
    assert connection.access_token not in text and connection.app.api_secret not in text
    assert connection.broker_user_id not in text and "alice" not in text


def test_orders_needing_attention_token_expiry_and_the_apps_budget(alice):
    account = linked_kite_account(alice)
    order(account, "UNKNOWN", 1)
    order(account, "NEEDS_REVIEW", 2)
    order(account, "NEEDS_REVIEW", 3)
    connection = account.connection
    labels = {"broker": "kite", "connection_id": connection.pk}

    assert sample("thor_broker_connection_orders_needing_attention", **labels, status="UNKNOWN") == 1
    assert sample("thor_broker_connection_orders_needing_attention", **labels, status="NEEDS_REVIEW") == 2
    expiry = sample("thor_broker_connection_token_expiry_timestamp_seconds", **labels)
    assert expiry == connection.access_expires_at.timestamp()
    assert sample("thor_broker_rate_budget_left", broker="kite", app_id=connection.app_id, bucket="orders") == 10


def test_whether_each_kite_connections_price_bands_are_checked(alice, charlie):
    checked = linked_kite_account(alice).connection  # on acme's shared app: acme has market data
    unchecked = linked_kite_account(charlie, app=BrokerAppFactory(tenant=charlie.tenant, owner=charlie)).connection
    schwab = linked_kite_account(
        alice, app=BrokerAppFactory(tenant=alice.tenant, owner=alice, kind=BrokerKind.SCHWAB)
    ).connection
    name = "thor_broker_connection_price_bands_checked"

    assert sample(name, broker="kite", connection_id=checked.pk) == 1
    assert sample(name, broker="kite", connection_id=unchecked.pk) == 0
    assert sample(name, broker="schwab", connection_id=schwab.pk) is None


def test_a_scrape_costs_the_same_queries_for_one_connection_or_many(alice, charlie):
    def queries_to_scrape() -> int:
        with CaptureQueriesContext(db) as captured:
            generate_latest(REGISTRY)
        return len(captured)

    linked_kite_account(alice)
    one = queries_to_scrape()
    for user in (alice, charlie, charlie):
        linked_kite_account(user)

    assert queries_to_scrape() == one


def test_revoked_connections_are_left_out(alice):
    connection = linked_kite_account(alice, status="revoked").connection

    assert (
        sample("thor_broker_connection_token_expiry_timestamp_seconds", broker="kite", connection_id=connection.pk)
        is None
    )


def test_a_failed_read_leaves_the_rest_of_the_scrape_alone(alice, anon_client, monkeypatch):
    linked_kite_account(alice)

    def broken(connections):
        raise RuntimeError("the database is away")

    monkeypatch.setattr(metrics.health, "connections_health", broken)
    response = anon_client.get("/metrics")

    assert response.status_code == 200
    text = response.content.decode()
    assert "django_http_requests_total_by_method_total" in text
    assert "thor_broker_connection_token_expiry_timestamp_seconds{" not in text


def test_registering_twice_keeps_one_collector(alice):
    metrics.register()
    metrics.register()

    assert generate_latest(REGISTRY).decode().count("# TYPE thor_broker_connection_failing gauge") == 1
