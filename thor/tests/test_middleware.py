import re
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"^[0-9a-f]{32}$")


class TestCorrelationId:
    def test_a_supplied_id_is_echoed(self, anon_client):
        response = anon_client.get("/api/health/", HTTP_X_CORRELATION_ID="spa-4f2a.01:retry-2")

        assert response["X-Correlation-ID"] == "spa-4f2a.01:retry-2"

    def test_one_is_generated_when_absent(self, anon_client):
        first = anon_client.get("/api/health/")["X-Correlation-ID"]
        second = anon_client.get("/api/health/")["X-Correlation-ID"]

        assert GENERATED.match(first) and GENERATED.match(second)
        assert first != second

    def test_error_responses_carry_it_too(self, anon_client):
        response = anon_client.get("/api/auth/me/", HTTP_X_CORRELATION_ID="abc-123")

        assert response.status_code == 401
        assert response["X-Correlation-ID"] == "abc-123"

    @pytest.mark.parametrize(
        "hostile",
        [
            "abc\r\nSet-Cookie: session=stolen",
            "abc\nInjected: yes",
            "x" * 1000,
            '{"level": "CRITICAL"}',
            "<script>alert(1)</script>",
            "",
        ],
    )
    def test_a_hostile_value_is_replaced(self, anon_client, hostile):
        response = anon_client.get("/api/health/", HTTP_X_CORRELATION_ID=hostile)

        assert GENERATED.match(response["X-Correlation-ID"])


class TestUnderAsgi:
    """The middleware stack answers under ASGI (what uvicorn serves) as it does under the test client."""

    @pytest.fixture
    def asgi(self):
        from asgiref.sync import async_to_sync
        from django.test import AsyncClient

        client = AsyncClient(enforce_csrf_checks=True)
        return SimpleNamespace(get=async_to_sync(client.get), post=async_to_sync(client.post))

    def test_the_same_headers_as_under_wsgi(self, asgi, anon_client):
        expected = anon_client.get("/api/health/")

        response = asgi.get("/api/health/", headers={"X-Correlation-ID": "asgi-1"})

        assert response.status_code == 200 and response["X-Correlation-ID"] == "asgi-1"
        for header in ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy"):
            assert response[header] == expected[header], header

    def test_the_metrics_still_count(self, asgi, anon_client):
        asgi.get("/api/health")

        text = anon_client.get("/metrics").content.decode()

        assert (
            'django_http_requests_total_by_view_transport_method_total{method="GET",transport="http",view="health"}'
            in (text)
        )

    def test_the_admin_login_keeps_its_session(self, asgi):
        from identity.tests.factories import PASSWORD, UserFactory

        admin = UserFactory(email="root@acme.test", is_staff=True, is_superuser=True)
        form = asgi.get("/admin/login/")
        token = form.cookies["csrftoken"].value

        response = asgi.post(
            "/admin/login/?next=/admin/",
            {"username": admin.email, "password": PASSWORD, "csrfmiddlewaretoken": token},
        )

        assert response.status_code == 302 and response["Location"] == "/admin/"
        assert response.cookies["sessionid"].value

    def test_a_post_without_its_csrf_token_is_refused(self, asgi):
        response = asgi.post("/admin/login/", {"username": "x", "password": "y"})

        assert response.status_code == 403


class TestNoStore:
    """Answers that carry tokens or account data tell browsers and proxies not to keep them."""

    @staticmethod
    def no_store(response):
        return "no-store" in response.get("Cache-Control", "")

    def test_login_and_refresh(self, anon_client, alice):
        from identity.tests.factories import PASSWORD

        tokens = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD}, format="json")
        refreshed = anon_client.post("/api/auth/token/refresh/", {"refresh": tokens.json()["refresh"]}, format="json")

        assert tokens.status_code == 200 and self.no_store(tokens)
        assert refreshed.status_code == 200 and self.no_store(refreshed)

    def test_register(self, anon_client, tenant):
        response = anon_client.post(
            "/api/auth/register/",
            {"email": "new@acme.test", "password": "a-Strong-passphrase-42", "tenant": "acme"},
            format="json",
        )

        assert response.status_code == 201 and self.no_store(response)

    @pytest.mark.parametrize("what", ["positions", "funds", "orders"])
    def test_account_data(self, alice_client, what):
        response = alice_client.get(f"/api/accounts/primary/{what}")

        assert response.status_code == 200 and self.no_store(response)

    @pytest.mark.parametrize("path", ["/api/auth/me/", "/api/accounts", "/api/brokers/connections", "/api/nowhere"])
    def test_every_other_api_answer_errors_included(self, anon_client, alice_client, path):
        assert self.no_store(alice_client.get(path))
        assert self.no_store(anon_client.get(path))

    def test_under_asgi_too(self, alice):
        from asgiref.sync import async_to_sync
        from django.test import AsyncClient

        from identity.tokens import token_pair_for

        client = AsyncClient(headers={"Authorization": f"Bearer {token_pair_for(alice)['access']}"})

        assert self.no_store(async_to_sync(client.get)("/api/accounts/primary/funds"))

    @pytest.mark.parametrize("path", ["/api/health/", "/api/schema/", "/api/docs/"])
    def test_public_documents_stay_cacheable(self, anon_client, path):
        assert not self.no_store(anon_client.get(path))
