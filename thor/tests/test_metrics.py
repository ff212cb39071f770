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
