"""Operators manage apps and connections without ever seeing a secret or a token."""

import pytest

from brokers.models import BrokerConnection
from brokers.tests.factories import KITE_SECRET, linked_kite_account
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
