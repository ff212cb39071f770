"""JSON bodies have a nesting limit: beyond it a 400 in the one error format, never a RecursionError."""

import io
import logging

import pytest

from thor.parsers import DepthLimitedJSONParser, json_depth_exceeds

pytestmark = pytest.mark.django_db

DEEP_ARRAY = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000
# Unclosed: the parser recurses all the way down before it finds the body is broken.
DEEP_AND_BROKEN = "[" * 5000


def parse(body: str):
    return DepthLimitedJSONParser().parse(io.BytesIO(body.encode()), "application/json", {})


class TestDepth:
    def test_counts_arrays_and_objects_alike(self):
        assert json_depth_exceeds("[{}]", 1)
        assert not json_depth_exceeds("[{}]", 2)
        assert not json_depth_exceeds("[[], [], {}]", 2)

    def test_brackets_inside_strings_are_text(self):
        body = '{"note": "' + "[" * 1000 + '", "quoted": "\\"[[[{{{", "also": "\\\\"}'

        assert parse(body) == {"note": "[" * 1000, "quoted": '"[[[{{{', "also": "\\"}

    def test_a_body_at_the_limit_parses(self, settings):
        settings.THOR_MAX_JSON_DEPTH = 32

        assert parse("[" * 32 + "]" * 32) is not None

    @pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT, DEEP_AND_BROKEN, "[" * 33 + "]" * 33])
    def test_a_body_beyond_the_limit_is_a_parse_error(self, settings, body):
        from rest_framework.exceptions import ParseError

        settings.THOR_MAX_JSON_DEPTH = 32

        with pytest.raises(ParseError, match="nested more than 32 levels"):
            parse(body)

    def test_bytes_to_bytes_charsets_are_still_refused(self):
        from rest_framework.exceptions import ParseError

        with pytest.raises(ParseError, match="Unsupported charset"):
            DepthLimitedJSONParser().parse(io.BytesIO(b"{}"), "application/json", {"encoding": "bz2_codec"})


ENDPOINTS = ["/api/auth/token/", "/api/auth/register/", "/api/brokers/kite/postback/", "/api/auth/token/refresh/"]


class TestEveryJsonEndpoint:
    @pytest.mark.parametrize("path", ENDPOINTS)
    @pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT, DEEP_AND_BROKEN], ids=["array", "object", "broken"])
    def test_deep_json_is_a_400_without_a_traceback(self, anon_client, caplog, path, body):
        with caplog.at_level(logging.WARNING):
            response = anon_client.post(path, body, content_type="application/json")

        assert response.status_code == 400
        assert response.json() == {
            "detail": "JSON parse error - the body is nested more than 32 levels deep.",
            "status_code": 400,
            "code": "parse_error",
        }
        assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]

    def test_authenticated_endpoints_too(self, alice_client, alice):
        from accounts.models import TradingAccount

        account = TradingAccount.objects.get(user=alice, is_primary=True)

        response = alice_client.post(f"/api/accounts/{account.pk}/orders", DEEP_OBJECT, content_type="application/json")

        assert response.status_code == 400 and response.json()["code"] == "parse_error"

    def test_ordinary_json_still_logs_in(self, anon_client, alice):
        from identity.tests.factories import PASSWORD

        response = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD}, format="json")

        assert response.status_code == 200 and response.json()["access"]
