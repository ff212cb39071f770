import pytest

from identity.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def preflight(client, origin, path="/api/auth/me/"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, x-account-id, idempotency-key",
    )


def header_set(response, name):
    return {value.strip().lower() for value in response[name].split(",")}


class TestPreflight:
    def test_a_tenant_origin_is_allowed_with_credentials(self, anon_client, tenant):
        response = preflight(anon_client, "https://app.acme.test")

        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == "https://app.acme.test"
        assert response["Access-Control-Allow-Credentials"] == "true"
        assert header_set(response, "Access-Control-Allow-Methods") == {
            "get",
            "post",
            "put",
            "patch",
            "delete",
            "options",
        }
        assert header_set(response, "Access-Control-Allow-Headers") == {
            "content-type",
            "authorization",
            "x-account-id",
            "x-correlation-id",
            "idempotency-key",
            "x-requested-with",
            "accept",
        }

    def test_an_unknown_origin_gets_no_cors_headers(self, anon_client, tenant):
        response = preflight(anon_client, "https://evil.test")

        assert "Access-Control-Allow-Origin" not in response
        assert "Access-Control-Allow-Credentials" not in response

    @pytest.mark.parametrize(
        "origin", ["https://app.acme.test.evil.test", "http://app.acme.test", "https://app.acme.test:8443", "null"]
    )
    def test_near_misses_of_a_tenant_origin_are_unknown(self, anon_client, tenant, origin):
        assert "Access-Control-Allow-Origin" not in preflight(anon_client, origin)

    def test_an_origin_from_the_environment_is_allowed(self, anon_client, settings):
        settings.CORS_ALLOWED_ORIGINS = ["https://ops.thor.test"]

        response = preflight(anon_client, "https://ops.thor.test")

        assert response["Access-Control-Allow-Origin"] == "https://ops.thor.test"

    def test_a_new_tenant_origin_is_allowed_at_once(self, anon_client, tenant):
        assert "Access-Control-Allow-Origin" not in preflight(anon_client, "https://new.test")

        TenantFactory(slug="newco", allowed_origins=["https://new.test"])

        assert preflight(anon_client, "https://new.test")["Access-Control-Allow-Origin"] == "https://new.test"


class TestActualRequest:
    def test_responses_expose_the_correlation_id_to_the_spa(self, anon_client, tenant):
        response = anon_client.get("/api/health/", HTTP_ORIGIN="http://localhost:5173")

        assert response["Access-Control-Allow-Origin"] == "http://localhost:5173"
        assert "x-correlation-id" in header_set(response, "Access-Control-Expose-Headers")


class TestEveryAnswer:
    """An SPA reads every answer Thor gives its origin, a 404 for a wrong base URL included (issue 23)."""

    @pytest.mark.parametrize("path", ["/v1/orders", "/orders", "/", "/api/no-such-thing"])
    def test_a_404_anywhere_carries_the_cors_headers(self, anon_client, tenant, path):
        response = anon_client.get(path, HTTP_ORIGIN="https://app.acme.test")

        assert response.status_code == 404
        assert response["Access-Control-Allow-Origin"] == "https://app.acme.test"
        assert response["Access-Control-Allow-Credentials"] == "true"

    def test_a_preflight_outside_the_api_is_answered(self, anon_client, tenant):
        assert preflight(anon_client, "https://app.acme.test", path="/v1/orders")["Access-Control-Allow-Origin"] == (
            "https://app.acme.test"
        )

    @pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/admin", "/metrics", "/metrics/"])
    def test_the_admin_and_metrics_never_answer_another_origin(self, anon_client, tenant, path):
        response = anon_client.get(path, HTTP_ORIGIN="https://app.acme.test")

        assert "Access-Control-Allow-Origin" not in response
        assert "Access-Control-Allow-Origin" not in preflight(anon_client, "https://app.acme.test", path=path)

    def test_an_unknown_origin_still_gets_nothing_outside_the_api(self, anon_client, tenant):
        assert "Access-Control-Allow-Origin" not in anon_client.get("/v1/orders", HTTP_ORIGIN="https://evil.test")


class TestUnderASGI:
    """The ASGI server runs CorsMiddleware on the event loop, where the ORM may not be used."""

    @pytest.fixture
    def asgi_get(self):
        from asgiref.sync import async_to_sync
        from django.test import AsyncClient

        return async_to_sync(AsyncClient().get)

    @pytest.mark.django_db(transaction=True)
    def test_a_tenant_origin_is_allowed_with_a_cold_cache(self, asgi_get):
        TenantFactory(slug="asgi", allowed_origins=["https://asgi.test"])

        response = asgi_get("/api/health/", headers={"Origin": "https://asgi.test"})

        assert response.status_code in (200, 503)
        assert response["Access-Control-Allow-Origin"] == "https://asgi.test"

    @pytest.mark.django_db(transaction=True)
    def test_metrics_answers_without_cors(self, asgi_get):
        TenantFactory(slug="asgi", allowed_origins=["https://asgi.test"])

        response = asgi_get("/metrics", headers={"Origin": "https://asgi.test"})

        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response

    def test_the_correlation_id_is_echoed(self, asgi_get):
        response = asgi_get("/api/no-such-thing", headers={"X-Correlation-ID": "trace-42"})

        assert (response.status_code, response["X-Correlation-ID"]) == (404, "trace-42")
