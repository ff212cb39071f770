"""Alice and Bob share tenant acme; Charlie is in globex. Each sees only their own data."""

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from conftest import client_for

pytestmark = pytest.mark.django_db


def me(client):
    response = client.get("/api/auth/me/")
    assert response.status_code == 200
    return response.json()


class TestMe:
    def test_each_user_sees_only_themselves(self, alice_client, bob_client, charlie_client, alice, bob, charlie):
        seen = {me(client)["email"]: me(client) for client in (alice_client, bob_client, charlie_client)}

        assert seen["alice@acme.test"]["id"] == alice.pk
        assert seen["bob@acme.test"]["id"] == bob.pk
        assert seen["charlie@globex.test"]["id"] == charlie.pk
        assert seen["charlie@globex.test"]["tenant"]["slug"] == "globex"
        primary_accounts = {body["primary_account"]["id"] for body in seen.values()}
        assert len(primary_accounts) == 3

    def test_the_primary_account_is_the_users_own(self, alice_client, alice):
        assert me(alice_client)["primary_account"]["id"] == alice.trading_accounts.get(is_primary=True).pk


class TestTokensAcrossTenants:
    def test_a_tenant_claim_naming_another_tenant_reads_nothing_of_it(self, charlie, alice):
        # A valid token of Charlie's claiming tenant acme: the tenant comes from the user, not the claim.
        token = AccessToken.for_user(charlie)
        token["tenant"] = "acme"
        client = client_for()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

        body = me(client)

        assert body["email"] == "charlie@globex.test"
        assert body["tenant"]["slug"] == "globex"

    def test_a_token_of_a_deleted_user_is_refused(self, charlie):
        client = client_for(charlie)
        charlie.delete()

        assert client.get("/api/auth/me/").status_code == 401
