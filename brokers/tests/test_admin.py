"""Operators manage apps and connections, and see each connection's health, without ever seeing a secret or a token."""

import pytest
from django.core.cache import cache
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from brokers.models import BrokerConnection
from brokers.tests.factories import KITE_SECRET, linked_kite_account, order
from identity.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops_client(client, tenant):
    ops = User.objects.create_superuser("ops@acme.test", "an-ops-passphrase-1", tenant=tenant)
    client.force_login(ops)
    return client


@pytest.fixture
def connection(alice):
    return linked_kite_account(alice, access_token="access-token-visible?").connection


def test_pages_mask_the_key_and_never_show_secrets_or_tokens(ops_client, connection):
    pages = [
        "/admin/brokers/brokerapp/",
        f"/admin/brokers/brokerapp/{connection.app_id}/change/",
        "/admin/brokers/brokerconnection/",
        f"/admin/brokers/brokerconnection/{connection.pk}/change/",
    ]
    for page in pages:
        html = ops_client.get(page).content.decode()
        assert KITE_SECRET not in html and "access-token-visible" not in html, page
        assert connection.app.api_key not in html, page
    assert f"••••{connection.app.api_key[-4:]}" in ops_client.get("/admin/brokers/brokerapp/").content.decode()


@pytest.mark.parametrize("action, status", [("mark_expired", "expired"), ("revoke", "revoked")])
def test_actions(ops_client, connection, action, status, settings):
    settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"  # revoking at Kite is best effort

    ops_client.post("/admin/brokers/brokerconnection/", {"action": action, "_selected_action": [connection.pk]})

    connection = BrokerConnection.objects.get(pk=connection.pk)
    assert connection.status == status and connection.access_token == ""


# --- Health -----------------------------------------------------------------------------------

LIST = "/admin/brokers/brokerconnection/"


@pytest.fixture
def account_needing_attention(alice):
    account = linked_kite_account(alice, access_token="access-token-visible?")
    order(account, "UNKNOWN", 1)
    order(account, "UNKNOWN", 2)
    order(account, "NEEDS_REVIEW", 3)
    return account


def failed_call_recorded(connection, code="timeout", message="Kite did not answer in time."):
    # What brokers.health.call_failed leaves in the cache.
    cache.set(f"broker-health:{connection.pk}:error", (1_800_000_000.0, code, message), 60)


def test_the_list_shows_calls_last_error_and_orders_needing_attention(ops_client, account_needing_attention):
    failed_call_recorded(account_needing_attention.connection)

    html = ops_client.get(LIST).content.decode()

    for column in ("Calls", "Last call error", "Unknown / needs review"):
        assert column in html
    assert "failing" in html and "timeout at 2027-01-15 08:00:00 UTC" in html
    assert "2 / 1" in html
    assert "access-token-visible" not in html


def test_the_list_reads_health_for_the_page_at_once(ops_client, alice, bob):
    def queries_for_the_list() -> int:
        with CaptureQueriesContext(db) as captured:
            assert ops_client.get(LIST).status_code == 200
        return len(captured)

    order(linked_kite_account(alice), "UNKNOWN", 1)
    queries_for_the_list()
    one = queries_for_the_list()
    for user in (alice, bob, bob):
        order(linked_kite_account(user), "NEEDS_REVIEW", 1)

    assert queries_for_the_list() == one


def test_the_change_page_shows_the_health_read_only(ops_client, account_needing_attention):
    connection = account_needing_attention.connection
    failed_call_recorded(connection)

    html = ops_client.get(f"{LIST}{connection.pk}/change/").content.decode()

    assert "Health" in html and "Kite did not answer in time." in html
    assert "<th>Unknown orders</th><td>2</td>" in html
    assert "<th>Orders needing review</th><td>1</td>" in html
    assert "<th>Rate budget quote</th><td>1 of 1 per 1 s</td>" in html
    assert 'name="health_summary"' not in html
    assert "access-token-visible" not in html and connection.app.api_secret not in html
