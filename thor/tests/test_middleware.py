import re

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
