"""One error format for every error, 400 to 500: {"detail", "status_code", "code"} (+ "errors")."""

import logging

import pytest
from rest_framework import exceptions
from rest_framework.exceptions import ErrorDetail

from thor.errors import ApplicationError, exception_handler, field_errors, retry_after_header

pytestmark = pytest.mark.django_db


def assert_error(response, status_code, code):
    assert response.status_code == status_code
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) <= {"detail", "status_code", "code", "errors"}
    assert body["status_code"] == status_code
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


class TestValidationError400:
    def test_names_each_bad_field_with_its_messages(self, anon_client):
        response = anon_client.post(
            "/api/auth/register/", {"email": "nope", "password": {"not": "text"}}, format="json"
        )

        body = assert_error(response, 400, "validation_error")
        assert set(body["errors"]) == {"email", "password"}
        assert all(isinstance(messages, list) and messages for messages in body["errors"].values())
        assert body["detail"].startswith("email: ")

    def test_errors_always_map_a_field_to_a_list_of_strings(self, anon_client):
        response = anon_client.post("/api/auth/register/", {"email": ["a", {"b": 1}], "password": None}, format="json")

        body = assert_error(response, 400, "validation_error")
        for field, messages in body["errors"].items():
            assert isinstance(field, str) and messages
            assert all(isinstance(message, str) for message in messages), field

    def test_a_body_that_is_not_an_object_is_a_request_wide_error(self, anon_client):
        response = anon_client.post("/api/auth/register/", ["not", "an", "object"], format="json")

        body = assert_error(response, 400, "validation_error")
        assert list(body["errors"]) == ["non_field_errors"]
        assert body["detail"] == body["errors"]["non_field_errors"][0]

    def test_a_disallowed_host_is_400_json(self, anon_client, settings):
        settings.ALLOWED_HOSTS = ["thor.test"]

        response = anon_client.get("/api/health/", HTTP_HOST="evil.test")

        body = assert_error(response, 400, "bad_request")
        assert "errors" not in body


class TestNestedValidationErrorsAreFlattened:
    """`errors` is flat whatever the serializer's shape: dotted paths to lists of strings."""

    def answer(self, detail):
        response = exception_handler(exceptions.ValidationError(detail), {})
        assert response.status_code == 400
        return response.data

    def test_a_field_of_a_list_item_is_named_by_its_path(self):
        body = self.answer({"orders": {1: {"quantity": ["Too small."]}, 3: {"price": ["Not a number."]}}})

        assert body["errors"] == {"orders.1.quantity": ["Too small."], "orders.3.price": ["Not a number."]}
        assert body["detail"] == "orders.1.quantity: Too small."

    def test_an_item_wrong_as_a_whole_is_named_by_the_item_path(self):
        body = self.answer({"orders": {0: {"non_field_errors": ["Expected an object."]}}})

        assert body["errors"] == {"orders.0": ["Expected an object."]}

    def test_a_dotted_key_ending_in_non_field_errors_reads_the_same(self):
        body = self.answer({"orders.2.non_field_errors": ["Rejected."]})

        assert body["errors"] == {"orders.2": ["Rejected."]}

    def test_many_true_lists_skip_the_valid_items_and_keep_their_index(self):
        body = self.answer({"legs": [{}, {"side": ["Bad."]}, {}, {"side": ["Worse."], "qty": ["Missing."]}]})

        assert body["errors"] == {"legs.1.side": ["Bad."], "legs.3.side": ["Worse."], "legs.3.qty": ["Missing."]}

    def test_request_wide_errors_keep_the_non_field_key(self):
        body = self.answer({"non_field_errors": ["Send at least one field."]})

        assert body["errors"] == {"non_field_errors": ["Send at least one field."]}
        assert body["detail"] == "Send at least one field."

    def test_a_bare_message_is_a_request_wide_error(self):
        assert self.answer("Nope.")["errors"] == {"non_field_errors": ["Nope."]}

    def test_deep_and_mixed_nesting_ends_in_strings(self):
        detail = {"a": {"b": [{"c": {"d": ["Deep."]}}, "Shallow."]}, "e": [["x", "y"]]}

        errors = self.answer(detail)["errors"]

        assert errors == {"a.b.0.c.d": ["Deep."], "a.b": ["Shallow."], "e.0": ["x", "y"]}

    def test_an_empty_error_tree_still_answers_a_message(self):
        body = self.answer({})

        assert body["errors"] == {"non_field_errors": ["Invalid input."]}

    def test_application_errors_are_flattened_the_same_way(self):
        error = ApplicationError("No.", code="validation_error", errors={"orders": {0: {"quantity": ["Too many."]}}})

        response = exception_handler(error, {})

        assert response.data["errors"] == {"orders.0.quantity": ["Too many."]}

    def test_field_errors_are_plain_strings_not_error_details(self):
        errors = field_errors({"x": [ErrorDetail("Bad.", code="invalid")]})

        assert errors == {"x": ["Bad."]} and type(errors["x"][0]) is str


class TestUnauthenticated401:
    def test_missing_token(self, anon_client):
        response = anon_client.get("/api/auth/me/")

        assert_error(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_garbage_token(self, anon_client):
        anon_client.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")

        assert_error(anon_client.get("/api/auth/me/"), 401, "token_not_valid")

    def test_api_never_redirects_to_a_login_page(self, anon_client):
        for path in ["/api/auth/me", "/api/auth/me/", "/api/auth/logout"]:
            response = anon_client.post(path, {}, format="json")

            assert response.status_code == 401, path


@pytest.mark.urls("thor.tests.urls")
class TestForbidden403:
    def test_non_staff_user_on_a_staff_only_view(self, alice_client):
        assert_error(alice_client.get("/api/test/staff-only/"), 403, "permission_denied")


class TestNotFound404:
    def test_unknown_api_path_is_json_not_html(self, alice_client):
        assert_error(alice_client.get("/api/no-such-thing/"), 404, "not_found")

    def test_unknown_api_path_without_a_token_is_still_json(self, anon_client):
        assert_error(anon_client.get("/api/no-such-thing"), 404, "not_found")

    def test_unknown_api_path_is_json_even_in_debug_mode(self, anon_client, settings):
        settings.DEBUG = True

        assert_error(anon_client.get("/api/no-such-thing"), 404, "not_found")

    def test_a_post_to_an_unknown_path_is_a_404_not_a_csrf_failure(self):
        from rest_framework.test import APIClient

        response = APIClient(enforce_csrf_checks=True).post("/api/no-such-thing", {"a": 1}, format="json")

        assert_error(response, 404, "not_found")


class TestMethodNotAllowed405:
    def test_delete_on_me(self, alice_client):
        response = alice_client.delete("/api/auth/me/")

        body = assert_error(response, 405, "method_not_allowed")
        assert "DELETE" in body["detail"]


class TestThrottled429:
    def test_login_beyond_its_rate(self, anon_client, alice, settings):
        settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, "login": "1/min"}
        anon_client.post("/api/auth/token/", {"email": alice.email, "password": "wrong"})

        response = anon_client.post("/api/auth/token/", {"email": alice.email, "password": "wrong"})

        assert_error(response, 429, "throttled")
        assert int(response["Retry-After"]) > 0


@pytest.mark.urls("thor.tests.urls")
class TestServerError500:
    def test_api_view_answers_json_without_internals(self, alice_client):
        response = alice_client.get("/api/test/broken/")

        body = assert_error(response, 500, "server_error")
        assert body == {"detail": "Internal server error.", "status_code": 500, "code": "server_error"}
        assert "hunter2" not in response.content.decode()
        assert "Traceback" not in response.content.decode()

    def test_traceback_is_logged_with_the_correlation_id(self, alice_client, caplog):
        with caplog.at_level(logging.ERROR, logger="thor.errors"):
            alice_client.get("/api/test/broken/", HTTP_X_CORRELATION_ID="req-500-check")

        [record] = [r for r in caplog.records if r.name == "thor.errors"]
        assert record.exc_info is not None
        assert "hunter2" in caplog.text
        assert record.correlation_id == "req-500-check"

    def test_plain_django_view_answers_the_same_json(self, alice_client):
        # The test client re-raises view exceptions by default; a real server answers with handler500.
        alice_client.raise_request_exception = False

        response = alice_client.get("/api/test/broken-django/")

        body = assert_error(response, 500, "server_error")
        assert "hunter2" not in response.content.decode()
        assert body["detail"] == "Internal server error."


@pytest.mark.parametrize(("seconds", "header"), [(0.2, "1"), (1.0, "1"), (1.01, "2"), (59.2, "60")])
def test_retry_after_is_whole_seconds_rounded_up(seconds, header):
    # Rounded down, a client would come back before the limit frees up and be refused again.
    assert retry_after_header(seconds) == header
