import pytest
from django.test import Client

from conftest import client_for
from identity.models import User

pytestmark = pytest.mark.django_db

USERS = "/admin/identity/user/"


@pytest.fixture
def ops_client(tenant):
    ops = User.objects.create_superuser("ops@thor.test", "ops-password-123", tenant=tenant)
    client = Client()
    client.force_login(ops)
    return client


class TestOpsInTheAdmin:
    def test_finds_a_user_by_email(self, ops_client, alice, charlie):
        response = ops_client.get(USERS, {"q": "alice@"})

        assert response.status_code == 200
        assert "alice@acme.test" in response.text
        assert "charlie@globex.test" not in response.text

    def test_sees_their_trading_accounts_inline(self, ops_client, alice):
        response = ops_client.get(f"{USERS}{alice.pk}/change/")

        assert response.status_code == 200
        assert "Trading accounts" in response.text
        assert "100000.00" in response.text

    def test_disables_users_with_the_action(self, ops_client, alice, bob):
        response = ops_client.post(USERS, {"action": "disable_users", "_selected_action": [alice.pk]}, follow=True)

        assert response.status_code == 200
        alice.refresh_from_db()
        bob.refresh_from_db()
        assert alice.is_active is False
        assert bob.is_active is True

    def test_a_disabled_users_next_request_is_refused_at_once(
        self, ops_client, alice, bob, django_capture_on_commit_callbacks
    ):
        alice_api, bob_api = client_for(alice), client_for(bob)
        # Both users' identities are in the cache, as after any request.
        assert alice_api.get("/api/auth/me/").status_code == bob_api.get("/api/auth/me/").status_code == 200

        with django_capture_on_commit_callbacks(execute=True):
            ops_client.post(USERS, {"action": "disable_users", "_selected_action": [alice.pk]}, follow=True)

        refused = alice_api.get("/api/accounts/primary/positions")
        assert refused.status_code == 401 and refused["Content-Type"].startswith("application/json")
        assert bob_api.get("/api/accounts/primary/positions").status_code == 200


class TestNonStaffInTheAdmin:
    def test_is_sent_to_the_admin_login(self, alice):
        client = Client()
        client.force_login(alice)

        response = client.get(USERS)

        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
