import pytest

pytestmark = pytest.mark.django_db


class TestMetrics:
    def test_counts_requests_and_their_latency(self, anon_client):
        anon_client.get("/api/health")

        response = anon_client.get("/metrics")

        assert response.status_code == 200
        text = response.content.decode()
        assert "django_http_requests_total_by_method_total" in text
        assert (
            'django_http_requests_total_by_view_transport_method_total{method="GET",transport="http",view="health"}'
            in text
        )
        assert "django_http_requests_latency_seconds_by_view_method_bucket" in text


class TestWhoMayScrape:
    """/metrics names every view, status and exception type: a scraper's, never the public's (issue 23)."""

    def test_without_a_token_a_client_on_this_machine_may(self, anon_client):
        for address in ("127.0.0.1", "::1"):
            assert anon_client.get("/metrics", REMOTE_ADDR=address).status_code == 200, address

    @pytest.mark.parametrize("address", ["203.0.113.7", "10.0.0.5", "not-an-address", ""])
    def test_without_a_token_anyone_else_gets_401_json(self, anon_client, address):
        response = anon_client.get("/metrics", REMOTE_ADDR=address)

        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated" and response["WWW-Authenticate"].startswith("Bearer")
        assert b"django_http" not in response.content

    def test_with_a_token_only_its_bearer_may_even_from_this_machine(self, anon_client, settings):
        settings.THOR_METRICS_TOKEN = "scrape-me-9f2"

        def status(address="127.0.0.1", **headers):
            return anon_client.get("/metrics", REMOTE_ADDR=address, headers=headers).status_code

        assert status() == 401
        assert status(Authorization="Bearer wrong") == 401
        assert status(Authorization="Bearer scrape-me-9f2x") == 401
        assert status(Authorization="Basic scrape-me-9f2") == 401
        assert status(Authorization="Bearer scrape-me-9f2") == 200
        assert status("10.0.0.5", Authorization="bearer scrape-me-9f2") == 200


def sample(name, **labels):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestDjangoPrometheusSeries:
    """django-prometheus's own middlewares record its series."""

    def test_a_response_is_counted_by_status_view_and_method(self, anon_client):
        labels = {"status": "401", "view": "auth-me", "method": "GET"}
        before = sample("django_http_responses_total_by_status_view_method_total", **labels)
        latency_before = sample(
            "django_http_requests_latency_seconds_by_view_method_count", view="auth-me", method="GET"
        )

        assert anon_client.get("/api/auth/me").status_code == 401

        assert sample("django_http_responses_total_by_status_view_method_total", **labels) == before + 1
        after = sample("django_http_requests_latency_seconds_by_view_method_count", view="auth-me", method="GET")
        assert after == latency_before + 1

    def test_a_made_up_method_is_one_label_not_a_new_series(self, anon_client):
        before = sample("django_http_requests_total_by_method_total", method="<invalid method>")

        anon_client.generic("BREW", "/api/health")

        assert sample("django_http_requests_total_by_method_total", method="<invalid method>") == before + 1
        assert sample("django_http_requests_total_by_method_total", method="BREW") == 0

    @pytest.mark.urls("thor.tests.urls")
    def test_an_exception_is_counted_by_type_and_view(self, anon_client):
        anon_client.raise_request_exception = False
        before = sample("django_http_exceptions_total_by_type_total", type="RuntimeError")

        assert anon_client.get("/api/test/broken-django").status_code == 500

        assert sample("django_http_exceptions_total_by_type_total", type="RuntimeError") == before + 1
