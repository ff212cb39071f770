"""Operators manage apps and connections, and see each connection's health, without ever seeing a secret or a token."""

import pytest
from django.core.cache import cache
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from brokers.models import BrokerConnection
from brokers.tests.factories import (
    KITE_SECRET,
    BrokerAppFactory,
    BrokerConnectionFactory,
    linked_kite_account,
    order,
)
from identity.models import User
from identity.tests.factories import TenantFactory, UserFactory

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


# --- Price bands: tenants whose live Kite orders go unchecked -------------------------------------

TENANTS = "/admin/identity/tenant/"


def own_app_kite_account(user):
    """A live Kite account through the user's own app: its session serves no one's market data."""
    return linked_kite_account(user, app=BrokerAppFactory(tenant=user.tenant, owner=user))


def test_the_connection_list_and_page_show_whether_price_bands_are_checked(ops_client, alice, charlie):
    checked = linked_kite_account(alice).connection  # on acme's shared app: acme has market data
    unchecked = own_app_kite_account(charlie).connection  # globex has none

    html = ops_client.get(LIST).content.decode()

    assert "Price bands" in html
    assert html.count("unchecked_no_market_data") == 1
    assert "<th>Price bands</th><td>checked</td>" in ops_client.get(f"{LIST}{checked.pk}/change/").content.decode()
    unchecked_page = ops_client.get(f"{LIST}{unchecked.pk}/change/").content.decode()
    assert "<th>Price bands</th><td>unchecked_no_market_data</td>" in unchecked_page


@pytest.fixture
def tenants_by_price_bands(tenant, other_tenant, alice, charlie):
    """acme: live Kite accounts and a market-data session; globex: live Kite accounts, none; initech: no live
    Kite account (its only session is on the shared app, with no account)."""
    own_app_kite_account(alice)
    BrokerConnectionFactory(user=UserFactory(tenant=tenant))  # a session on acme's shared app, no account
    own_app_kite_account(charlie)
    initech = TenantFactory(slug="initech")
    BrokerConnectionFactory(user=UserFactory(tenant=initech))
    return tenant, other_tenant, initech


def listed_slugs(ops_client, query: str = "") -> list[str]:
    response = ops_client.get(f"{TENANTS}{query}")
    assert response.status_code == 200
    return sorted(response.context["cl"].result_list.values_list("slug", flat=True))


def test_the_tenant_list_shows_whose_live_kite_orders_go_unchecked(ops_client, tenants_by_price_bands):
    html = ops_client.get(TENANTS).content.decode()

    assert "Kite price bands" in html
    rows = {tenant.slug: row for tenant in tenants_by_price_bands for row in html.split("<tr") if tenant.slug in row}
    assert "unchecked_no_market_data" in rows["globex"]
    assert ">checked<" in rows["acme"] and "unchecked" not in rows["acme"]
    assert "checked" not in rows["initech"]


def test_the_tenant_filter_finds_them(ops_client, tenants_by_price_bands):
    assert listed_slugs(ops_client, "?price_bands=unchecked_no_market_data") == ["globex"]
    assert listed_slugs(ops_client, "?price_bands=checked") == ["acme"]
    assert {"acme", "globex", "initech"} <= set(listed_slugs(ops_client))


def test_an_unknown_filter_value_is_ignored(ops_client, tenants_by_price_bands):
    assert listed_slugs(ops_client, "?price_bands=%27%3B+drop+table") == listed_slugs(ops_client)


def test_the_tenant_list_costs_the_same_queries_for_one_tenant_or_many(ops_client, alice):
    def queries_for_the_list() -> int:
        with CaptureQueriesContext(db) as captured:
            assert ops_client.get(TENANTS).status_code == 200
        return len(captured)

    own_app_kite_account(alice)
    queries_for_the_list()
    one = queries_for_the_list()
    for slug in ("globex", "initech", "umbrella"):
        own_app_kite_account(UserFactory(tenant=TenantFactory(slug=slug)))

    assert queries_for_the_list() == one
