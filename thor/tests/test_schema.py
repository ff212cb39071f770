import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db

AUTH_PATHS = [
    "/api/auth/register/",
    "/api/auth/token/",
    "/api/auth/token/refresh/",
    "/api/auth/logout/",
    "/api/auth/me/",
]
PUBLIC_PATHS = ["/api/auth/register/"]


@pytest.fixture
def schema(openapi_schema):
    return openapi_schema


class TestSchema:
    def test_is_public_openapi_3_listing_the_auth_paths(self, schema):
        assert schema["openapi"].startswith("3.")
        assert set(AUTH_PATHS) <= set(schema["paths"])

    def test_is_also_served_as_json(self, anon_client):
        response = anon_client.get("/api/schema/?format=json")

        assert response.status_code == 200
        assert response.json()["openapi"].startswith("3.")

    @pytest.mark.parametrize("path", AUTH_PATHS)
    def test_auth_operations_document_their_errors_in_the_one_error_format(self, schema, path):
        for method, operation in schema["paths"][path].items():
            errors = {code: r for code, r in operation["responses"].items() if code.startswith(("4", "5"))}

            assert "401" in errors or path in PUBLIC_PATHS, f"{method.upper()} {path}"
            assert errors, f"{method.upper()} {path} documents no error response"
            for response in errors.values():
                assert response["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"

    def test_writes_document_their_request_body(self, schema):
        for path in ["/api/auth/register/", "/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/logout/"]:
            assert "requestBody" in schema["paths"][path]["post"], path

    def test_validates_against_the_openapi_3_specification(self, tmp_path):
        call_command("spectacular", "--validate", "--file", str(tmp_path / "schema.yaml"))


class TestDocs:
    def test_swagger_ui_is_public_html(self, anon_client):
        response = anon_client.get("/api/docs/")

        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        assert b"swagger-ui" in response.content
