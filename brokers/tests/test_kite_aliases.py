"""Seed 003's aliases answer for the signed-in user's own Kite account only."""

import pytest

from brokers.tests.factories import linked_kite_account

pytestmark = pytest.mark.django_db


class TestScope:
    def test_a_user_without_kite_gets_404(self, bob_client):
        response = bob_client.get("/api/portfolio/holdings")

        assert response.status_code == 404 and response.json()["code"] == "no_kite_account"

    @pytest.mark.parametrize("path", ["/api/user/profile", "/api/market/quote/408065", "/api/portfolio/holdings"])
    def test_aliases_need_a_signed_in_user(self, anon_client, path):
        assert anon_client.get(path).status_code == 401

    @pytest.mark.parametrize("token", ["0", "4294967296", "99999999999999999999999"])
    def test_an_out_of_range_instrument_token_is_404(self, alice, alice_client, token):
        linked_kite_account(alice)

        assert alice_client.get(f"/api/market/quote/{token}").status_code == 404

    def test_another_users_kite_account_is_never_used(self, alice, bob_client, charlie_client):
        linked_kite_account(alice)

        assert bob_client.get("/api/user/profile").status_code == 404
        assert charlie_client.get("/api/user/profile").status_code == 404
