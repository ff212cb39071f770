"""Bad input on the token, refresh and logout endpoints: always 400/401 in the one error format."""

import pytest

from identity.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


class TestTokenInput:
    @pytest.mark.parametrize(
        "body, field",
        [
            ({}, "email"),
            ({"email": "alice@acme.test"}, "password"),
            ({"email": ["alice@acme.test"], "password": PASSWORD}, "email"),
            ({"email": "alice@acme.test", "password": {"a": 1}}, "password"),
        ],
    )
    def test_missing_or_mistyped_fields_are_400_naming_the_field(self, anon_client, alice, body, field):
        response = anon_client.post("/api/auth/token/", body, format="json")

        assert response.status_code == 400
        assert response.json()["code"] == "validation_error"
        assert field in response.json()["errors"]

    @pytest.mark.parametrize("body", [{"email": "a" * 5000 + "@acme.test"}, {"password": "p" * 100_000}])
    def test_oversized_credentials_are_refused_not_a_server_error(self, anon_client, alice, body):
        response = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD, **body})

        assert response.status_code in (400, 401)
        assert response.json()["status_code"] == response.status_code

    def test_unknown_user_is_the_same_401_as_a_wrong_password(self, anon_client, alice):
        unknown = anon_client.post("/api/auth/token/", {"email": "nobody@acme.test", "password": PASSWORD})
        wrong = anon_client.post("/api/auth/token/", {"email": alice.email, "password": "wrong-password"})

        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json() == wrong.json()


class TestRefreshInput:
    @pytest.mark.parametrize(
        "body, status_code",
        [({}, 400), ({"refresh": ""}, 400), ({"refresh": "garbage"}, 401), ({"refresh": ["a"]}, 400)],
    )
    def test_bad_refresh_tokens(self, anon_client, body, status_code):
        response = anon_client.post("/api/auth/token/refresh/", body, format="json")

        assert response.status_code == status_code
        assert response.json()["status_code"] == status_code

    def test_an_access_token_is_not_a_refresh_token(self, anon_client, alice):
        tokens = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD}).json()

        response = anon_client.post("/api/auth/token/refresh/", {"refresh": tokens["access"]})

        assert response.status_code == 401
        assert response.json()["code"] == "token_not_valid"


class TestLogoutInput:
    @pytest.mark.parametrize("body", [{}, {"refresh": "garbage"}, {"refresh": "x" * 3000}, {"refresh": 42}])
    def test_bad_bodies_are_400(self, alice_client, body):
        response = alice_client.post("/api/auth/logout/", body, format="json")

        assert response.status_code == 400
        assert response.json()["status_code"] == 400

    def test_needs_an_access_token(self, anon_client):
        assert anon_client.post("/api/auth/logout/", {"refresh": "x"}).status_code == 401
