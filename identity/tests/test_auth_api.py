import time
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.hashers import make_password

from accounts.models import TradingAccount
from identity import services
from identity.models import User
from identity.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

STRONG = "a-Strong-passphrase-42"


def register(client, **body):
    return client.post("/api/auth/register/", {"email": "new@acme.test", "password": STRONG, **body}, format="json")


class TestRegister:
    def test_creates_user_with_funded_paper_account_and_tokens(self, anon_client, tenant):
        response = register(anon_client, tenant="acme", marketing_opt_in=True)

        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["user"]["email"] == "new@acme.test"
        assert body["user"]["tenant"]["slug"] == "acme"
        assert body["user"]["marketing_opt_in"] is True
        assert set(body["tokens"]) == {"access", "refresh"}
        account = TradingAccount.objects.get(user__email="new@acme.test")
        assert account.mode == "paper" and account.is_primary
        assert account.cash == Decimal("100000.00")

    def test_without_tenant_lands_in_the_default_tenant(self, anon_client):
        response = register(anon_client)

        assert response.status_code == 201
        assert response.json()["user"]["tenant"]["slug"] == "default"

    def test_duplicate_email_in_any_case_is_rejected(self, anon_client, alice):
        response = register(anon_client, email="ALICE@acme.test")

        assert response.status_code == 400
        assert response.json()["code"] == "duplicate_email"
        assert "email" in response.json()["errors"]

    def test_unknown_tenant(self, anon_client):
        response = register(anon_client, tenant="nope")

        assert response.status_code == 400
        assert response.json()["errors"] == {"tenant": ["Unknown tenant."]}
        assert not User.objects.filter(email="new@acme.test").exists()

    @pytest.mark.parametrize(
        "body",
        [
            {"password": "short"},
            {"password": "password123456"},
            {"password": "new@acme.test-1"},
            {"email": "alice@acme.test"},
            {"email": "ALICE@acme.test", "password": "short"},
            {"email": "not-an-email"},
        ],
        ids=["short", "common", "like-the-email", "taken-email", "taken-email-and-short", "bad-email"],
    )
    def test_an_unknown_tenant_answers_as_a_known_one_does(self, anon_client, alice, other_tenant, body):
        """Issue 23, finding 11: an unknown tenant was named before anything else was checked (enumeration)."""
        known = register(anon_client, tenant="globex", **body)
        unknown = register(anon_client, tenant="no-such-tenant", **body)

        assert known.status_code == unknown.status_code == 400
        assert known.json() == unknown.json()
        assert "tenant" not in unknown.json().get("errors", {})

    def test_an_unknown_tenant_costs_the_password_hashing_a_known_one_does(self, anon_client, tenant, monkeypatch):
        hashed = []
        monkeypatch.setattr(services, "make_password", lambda password: hashed.append(1) or make_password(password))

        register(anon_client, tenant="acme")
        register(anon_client, email="other@acme.test", tenant="no-such-tenant")

        assert hashed == [1, 1]
        assert User.objects.get(email="new@acme.test").check_password(STRONG)

    @pytest.mark.parametrize(
        "body, field",
        [
            ({"email": None}, "email"),
            ({"email": "not-an-email"}, "email"),
            ({"email": "x" * 300 + "@a.test"}, "email"),
            ({"password": "short"}, "password"),
            ({"password": "password123456"}, "password"),
            ({"password": ["a", "list"]}, "password"),
            ({"tenant": "../../etc"}, "tenant"),
            ({"marketing_opt_in": "maybe"}, "marketing_opt_in"),
        ],
    )
    def test_bad_input_names_the_field(self, anon_client, tenant, body, field):
        response = register(anon_client, **body)

        assert response.status_code == 400
        payload = response.json()
        assert payload["status_code"] == 400
        assert field in payload["errors"]
        assert not User.objects.filter(email="new@acme.test").exists()

    def test_missing_body(self, anon_client):
        response = anon_client.post("/api/auth/register", {}, format="json")

        assert response.status_code == 400
        assert set(response.json()["errors"]) == {"email", "password"}

    def test_malformed_json(self, anon_client):
        response = anon_client.post("/api/auth/register/", "{not json", content_type="application/json")

        assert response.status_code == 400
        assert response.json()["code"] == "parse_error"


class TestTokens:
    def test_login_refresh_and_me(self, anon_client, alice):
        tokens = anon_client.post("/api/auth/token/", {"email": "Alice@ACME.test", "password": PASSWORD}).json()
        anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")

        me = anon_client.get("/api/auth/me/")

        assert me.status_code == 200
        assert me.json()["email"] == "alice@acme.test"
        assert me.json()["primary_account"]["cash"] == "100000.00"
        assert me.json()["primary_account"]["mode"] == "paper"
        refreshed = anon_client.post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]})
        assert refreshed.status_code == 200
        assert set(refreshed.json()) == {"access", "refresh"}

    def test_refresh_token_rotates_and_the_spent_one_is_refused_after_the_grace_window(self, anon_client, alice):
        tokens = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD}).json()
        with time_machine.travel(time.time(), tick=False) as clock:
            rotated = anon_client.post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]}).json()
            assert rotated["refresh"] != tokens["refresh"]
            clock.shift(31)

            reused = anon_client.post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]})

        assert reused.status_code == 401
        assert reused.json()["code"] == "token_not_valid"

    def test_wrong_password_is_401_json(self, anon_client, alice):
        response = anon_client.post("/api/auth/token/", {"email": alice.email, "password": "wrong"})

        assert response.status_code == 401
        assert response.json()["status_code"] == 401

    def test_logout_blacklists_refresh_token(self, anon_client, alice):
        tokens = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD}).json()
        anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")

        assert anon_client.post("/api/auth/logout/", {"refresh": tokens["refresh"]}).status_code == 205
        assert anon_client.post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]}).status_code == 401

    def test_cannot_log_out_someone_elses_refresh_token(self, alice_client, bob, anon_client):
        bobs = anon_client.post("/api/auth/token/", {"email": bob.email, "password": PASSWORD}).json()

        response = alice_client.post("/api/auth/logout/", {"refresh": bobs["refresh"]})

        assert response.status_code == 400
        assert anon_client.post("/api/auth/token/refresh/", {"refresh": bobs["refresh"]}).status_code == 200

    def test_refresh_token_is_not_an_access_token(self, anon_client, alice):
        tokens = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD}).json()
        anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['refresh']}")

        assert anon_client.get("/api/auth/me/").status_code == 401

    def test_tampered_token(self, anon_client, alice):
        tokens = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD}).json()
        header, payload, signature = tokens["access"].split(".")
        anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {header}.{payload}.{signature[::-1]}")

        response = anon_client.get("/api/auth/me/")

        assert response.status_code == 401
        assert response.json()["code"] == "token_not_valid"

    def test_expired_token(self, anon_client, alice, settings):
        from datetime import timedelta

        from rest_framework_simplejwt.tokens import AccessToken

        token = AccessToken.for_user(alice)
        token.set_exp(lifetime=-timedelta(seconds=1))
        anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

        assert anon_client.get("/api/auth/me/").status_code == 401

    def test_disabled_user_is_locked_out(self, alice_client, alice):
        alice.is_active = False
        alice.save()

        assert alice_client.get("/api/auth/me/").status_code == 401

    def test_login_is_throttled_per_ip(self, anon_client, alice, settings):
        settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, "login": "3/min"}
        for _ in range(3):
            anon_client.post("/api/auth/token/", {"email": alice.email, "password": "wrong"})

        response = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD})

        assert response.status_code == 429
        assert response.json()["code"] == "throttled"
        assert "Retry-After" in response


def test_unauthenticated_me_is_401_json_not_redirect(anon_client):
    response = anon_client.get("/api/auth/me")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "status_code": 401,
        "code": "not_authenticated",
    }
