"""The cached reads answered before Django's handler (thor.early_reads): the same status, headers and bytes
as Django's whole stack gives the same request, and every request it cannot vouch for handed to Django.

Each request is sent as a WSGI server sends it, to the layer in front of Django's own WSGI handler; a
counter on the handler says which of the two answered.
"""

import contextlib
import io
import json
import logging
import re
import time
from unittest import mock
from urllib.parse import unquote_to_bytes, urlsplit

import pytest
import requests
from django.core.checks import run_checks
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory

from brokers.tests.sandbox_fixtures import link, sandbox_fault
from conftest import client_for
from identity.models import User
from identity.tokens import token_pair_for
from thor import early_reads
from thor.early_reads import EarlyReads

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

READS = ["positions", "holdings", "funds", "orders"]
ALLOWED_ORIGIN = "http://localhost:5173"  # the acme tenant's


class DjangoHandler:
    """Django's WSGI handler, counting the requests that reach it."""

    def __init__(self):
        self.handler = WSGIHandler()
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.handler(environ, start_response)


@contextlib.contextmanager
def connections_kept_open():
    """As Django's test client does: a request's signals leave the database connection open (closing it would
    end the transaction every test runs in)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


def send(application, path, token=None, method="GET", **extra):
    """(status, headers, body) of one request to a WSGI application."""
    if token is not None:
        extra.setdefault("HTTP_AUTHORIZATION", f"Bearer {token}")
    environ = RequestFactory().generic(method, path, **extra).environ
    environ["wsgi.input"] = io.BytesIO(b"")
    # As a WSGI server gives it: the path's bytes as latin-1 text (the factory's request decoded it to UTF-8).
    environ["PATH_INFO"] = unquote_to_bytes(urlsplit(path).path).decode("iso-8859-1")
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, headers

    with connections_kept_open():
        chunks = application(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()  # as a WSGI server does: Django's request_finished
    return answer["status"], answer["headers"], body


@pytest.fixture
def live(sandbox, alice_client):
    requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1500.0}, timeout=5).raise_for_status()
    return link(alice_client)


@pytest.fixture
def token(alice):
    return token_pair_for(alice)["access"]


@pytest.fixture
def django_handler():
    return DjangoHandler()


@pytest.fixture
def lane(django_handler):
    return EarlyReads(django_handler)


def warmed(lane, path, token):
    """The path read twice through Django (first read, then the caches it filled)."""
    for _ in range(2):
        status, _, body = send(lane.application, path, token)
        assert status == "200 OK", body


class TestTheSameAnswerAsDjangos:
    @pytest.mark.parametrize("what", READS)
    @pytest.mark.parametrize(
        "extra",
        [
            {},
            {"HTTP_ORIGIN": ALLOWED_ORIGIN},
            {"HTTP_ORIGIN": "https://evil.test"},
            {"HTTP_ACCEPT": "application/json, text/plain, */*", "HTTP_X_REQUESTED_WITH": "XMLHttpRequest"},
        ],
        ids=["plain", "allowed-origin", "other-origin", "axios"],
    )
    def test_status_headers_and_bytes(self, lane, django_handler, live, token, what, extra):
        path = f"/api/accounts/{live.pk}/{what}"
        warmed(lane, path, token)
        calls = django_handler.calls

        early = send(lane, path, token, HTTP_X_CORRELATION_ID="same-id", **extra)
        assert django_handler.calls == calls, "answered before Django's handler"
        through_django = send(django_handler, path, token, HTTP_X_CORRELATION_ID="same-id", **extra)

        assert early[0] == through_django[0] == "200 OK"
        assert early[2] == through_django[2]
        assert sorted(early[1]) == sorted(through_django[1])
        headers = dict(early[1])
        assert headers["Cache-Control"] == "no-store" and headers["X-Correlation-ID"] == "same-id"
        assert headers["Content-Length"] == str(len(early[2]))
        if extra.get("HTTP_ORIGIN") == ALLOWED_ORIGIN:
            assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        else:
            assert "access-control-allow-origin" not in headers

    def test_https_behind_the_proxy_with_production_headers(self, settings, live, token):
        settings.SECURE_SSL_REDIRECT = True
        settings.SECURE_HSTS_SECONDS = 31536000
        settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
        settings.SECURE_HSTS_PRELOAD = True
        django_handler = DjangoHandler()  # middleware read their settings when made
        lane = EarlyReads(django_handler)
        path = f"/api/accounts/{live.pk}/positions"
        secure = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_CORRELATION_ID": "same-id"}
        for _ in range(2):
            assert send(django_handler, path, token, **secure)[0] == "200 OK"
        calls = django_handler.calls

        early = send(lane, path, token, **secure)
        assert django_handler.calls == calls
        through_django = send(django_handler, path, token, **secure)

        assert sorted(early[1]) == sorted(through_django[1])
        assert "preload" in dict(early[1])["Strict-Transport-Security"]

    def test_plain_http_is_redirected_by_django(self, settings, live, token):
        settings.SECURE_SSL_REDIRECT = True
        django_handler = DjangoHandler()
        lane = EarlyReads(django_handler)
        path = f"/api/accounts/{live.pk}/positions"
        for _ in range(2):
            assert send(django_handler, path, token, HTTP_X_FORWARDED_PROTO="https")[0] == "200 OK"
        calls = django_handler.calls

        status, headers, _ = send(lane, path, token)

        assert status.startswith("301") and dict(headers)["Location"].startswith("https://")
        assert django_handler.calls == calls + 1

    def test_a_rotated_csrf_cookie_is_sent_as_django_sends_it(self, lane, django_handler, live, token):
        path = f"/api/accounts/{live.pk}/funds"
        warmed(lane, path, token)
        calls = django_handler.calls

        early = send(lane, path, token, HTTP_COOKIE="csrftoken=not-a-token")
        through_django = send(django_handler, path, token, HTTP_COOKIE="csrftoken=not-a-token")

        assert django_handler.calls == calls + 1
        cookie_names = [(name, value.split("=", 1)[0]) for name, value in early[1] if name == "Set-Cookie"]
        assert cookie_names == [("Set-Cookie", " csrftoken")]
        assert cookie_names == [
            (name, value.split("=", 1)[0]) for name, value in through_django[1] if name == "Set-Cookie"
        ]

    def test_the_request_is_counted_in_the_same_series(self, lane, django_handler, live, token):
        from thor.tests.test_metrics import sample

        path = f"/api/accounts/{live.pk}/positions"
        warmed(lane, path, token)
        labels = {"status": "200", "view": "account-positions", "method": "GET"}
        before = sample("django_http_responses_total_by_status_view_method_total", **labels)
        latency_before = sample(
            "django_http_requests_latency_seconds_by_view_method_count", view="account-positions", method="GET"
        )
        calls = django_handler.calls

        send(lane, path, token)

        assert django_handler.calls == calls
        assert sample("django_http_responses_total_by_status_view_method_total", **labels) == before + 1
        latency = sample(
            "django_http_requests_latency_seconds_by_view_method_count", view="account-positions", method="GET"
        )
        assert latency == latency_before + 1


class TestHandedToDjango:
    @pytest.mark.parametrize(
        ("method", "extra", "status"),
        [
            ("GET", {"QUERY_STRING": "fresh=1"}, "200 OK"),
            ("GET", {"HTTP_ACCEPT": "text/html"}, "406 Not Acceptable"),
            ("HEAD", {}, "200 OK"),
            ("POST", {"CONTENT_TYPE": "application/json"}, "405 Method Not Allowed"),
        ],
    )
    def test_what_is_not_a_plain_cached_read(self, lane, django_handler, live, token, method, extra, status):
        path = f"/api/accounts/{live.pk}/positions"
        warmed(lane, path, token)
        calls = django_handler.calls

        assert send(lane, path, token, method=method, **extra)[0] == status
        assert django_handler.calls == calls + 1

    @pytest.mark.parametrize(
        "header",
        ["Bearer", "Bearer a b", "bearer {token}", "Basic {token}", "Bearer {token}x", "Bearer  ", "Token {token}", ""],
    )
    def test_hostile_authorization_headers_are_djangos_401(self, lane, django_handler, live, token, header):
        path = f"/api/accounts/{live.pk}/positions"
        warmed(lane, path, token)
        calls = django_handler.calls

        status, headers, body = send(lane, path, HTTP_AUTHORIZATION=header.format(token=token))

        assert status == "401 Unauthorized" and dict(headers)["Content-Type"] == "application/json"
        assert django_handler.calls == calls + 1 and b'"code"' in body

    @pytest.mark.parametrize("header", ["Bearer x", "Bearer {token}"])
    def test_a_path_that_is_not_ascii_is_djangos_answer_never_a_500(self, lane, live, token, header):
        # The early read must leave the WSGI environ as the server gave it (latin-1 text) for Django's handler.
        status, headers, body = send(
            lane, "/api/accounts/%E2%82%AC/orders/", HTTP_AUTHORIZATION=header.format(token=token)
        )

        assert status in ("401 Unauthorized", "404 Not Found"), (status, body)
        assert dict(headers)["Content-Type"] == "application/json" and b'"code"' in body

    def test_someone_elses_account_is_a_404_however_often_asked(self, lane, live, token, bob, charlie):
        for what in ("positions", "orders"):
            warmed(lane, f"/api/accounts/{live.pk}/{what}", token)
        # bob shares alice's tenant, charlie is of another one.
        for someone in (bob, charlie):
            their_token = token_pair_for(someone)["access"]
            for _ in range(3):
                for what in ("positions", "orders"):
                    assert send(lane, f"/api/accounts/{live.pk}/{what}", their_token)[0] == "404 Not Found"

    def test_a_host_django_refuses_is_refused(self, settings, live, token):
        settings.ALLOWED_HOSTS = ["thor.example.com"]
        django_handler = DjangoHandler()
        lane = EarlyReads(django_handler)
        path = f"/api/accounts/{live.pk}/positions"
        host = {"HTTP_HOST": "thor.example.com"}
        for _ in range(2):
            assert send(django_handler, path, token, **host)[0] == "200 OK"
        calls = django_handler.calls

        assert send(lane, path, token, HTTP_HOST="evil.test")[0] == "400 Bad Request"
        assert django_handler.calls == calls + 1

    @pytest.mark.parametrize(
        "path", ["/api/auth/me", "/api/accounts/", "/api/nowhere", "/api/accounts/primary/positions/../../auth/me"]
    )
    def test_paths_without_a_cached_answer(self, lane, django_handler, token, path):
        send(lane, path, token)

        assert django_handler.calls == 1

    def test_an_error_in_the_answer_is_djangos_to_answer(self, lane, django_handler, live, token, caplog):
        path = f"/api/accounts/{live.pk}/positions"
        warmed(lane, path, token)
        calls = django_handler.calls

        with mock.patch.object(lane.x_frame, "process_response", side_effect=RuntimeError):
            status, _, _ = send(lane, path, token)

        assert status == "200 OK" and django_handler.calls == calls + 1
        assert "early_read_handed_on: RuntimeError" in caplog.text

    def test_hostile_paths_keep_the_resolved_paths_within_their_bounds(self, lane):
        for account_id in range(early_reads.RESOLVED_PATHS + 50):
            lane.answer(RequestFactory().get(f"/api/accounts/{account_id}/positions").environ)
        assert lane.resolved.cache_info().currsize == early_reads.RESOLVED_PATHS

        kept = lane.resolved.cache_info()
        long_path = "/api/accounts/" + "9" * early_reads.RESOLVED_PATH_LENGTH + "/positions"
        assert lane.answer(RequestFactory().get(long_path).environ) is None
        assert lane.resolved.cache_info() == kept, "a long path is resolved, not kept"


class TestWhenTheBrokerOrRedisFails:
    def test_past_the_fresh_period_django_answers_the_last_good_snapshot_marked_stale(
        self, settings, lane, django_handler, sandbox, live, token
    ):
        settings.THOR_LIVE_FRESH_SECONDS = 1
        path = f"/api/accounts/{live.pk}/positions"
        warmed(lane, path, token)
        calls = django_handler.calls
        first = json.loads(send(lane, path, token)[2])
        assert first["source"] == "cache" and django_handler.calls == calls
        time.sleep(1.2)  # the fresh copy's time in Redis runs out
        sandbox_fault(sandbox, kind="5xx", path="/portfolio/positions", count=10)

        for _ in range(2):
            status, _, body = send(lane, path, token)

            assert status == "200 OK"
            answer = json.loads(body)
            assert answer["source"] == "stale" and (answer["as_of"], answer["data"]) == (first["as_of"], first["data"])
        assert django_handler.calls == calls + 2, "a stale answer is never the early reads'"

    def test_with_redis_gone_django_answers_from_the_broker(self, settings, lane, django_handler, live, token):
        path = f"/api/accounts/{live.pk}/positions"
        warmed(lane, path, token)
        calls = django_handler.calls
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://127.0.0.1:1/0",
                "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.1, "SOCKET_TIMEOUT": 0.1},
            }
        }

        status, _, body = send(lane, path, token)

        assert status == "200 OK" and django_handler.calls == calls + 1
        assert json.loads(body)["source"] == "live"


class TestRevocation:
    def test_logging_out_is_refused_at_once(self, lane, alice, live):
        pair = token_pair_for(alice)
        path = f"/api/accounts/{live.pk}/positions"
        warmed(lane, path, pair["access"])

        client = client_for()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
        assert client.post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json").status_code == 205

        assert send(lane, path, pair["access"])[0] == "401 Unauthorized"

    def test_a_disabled_user_is_refused_at_once(self, lane, alice, live, token):
        path = f"/api/accounts/{live.pk}/positions"
        warmed(lane, path, token)
        user = User.objects.get(pk=alice.pk)
        user.is_active = False
        user.save()

        assert send(lane, path, token)[0] == "401 Unauthorized"


class TestWhenItOpens:
    def test_under_the_shipped_settings(self):
        assert early_reads.closed_because() is None
        assert not [message for message in run_checks() if message.id == "thor.W001"]

    @pytest.mark.parametrize(
        "change",
        [
            {"MIDDLEWARE": [*early_reads.REPLAYED_MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]},
            {"MIDDLEWARE": list(reversed(early_reads.REPLAYED_MIDDLEWARE))},
            {"PREPEND_WWW": True},
            {"DISALLOWED_USER_AGENTS": [re.compile("curl")]},
            {"STATIC_URL": "/api/static/"},
        ],
    )
    def test_closed_by_anything_it_does_not_replay(self, settings, caplog, live, token, change):
        for name, value in change.items():
            setattr(settings, name, value)
        with caplog.at_level(logging.WARNING, logger="thor.early_reads"):
            lane = EarlyReads(teapot)

        assert "early_reads_closed" in caplog.text
        assert send(lane, f"/api/accounts/{live.pk}/positions", token)[0] == "418 I'm a teapot"
        assert [message.id for message in run_checks() if message.id.startswith("thor.")] == ["thor.W001"]

    def test_closed_on_purpose_without_a_warning(self, settings, caplog, live, token):
        settings.THOR_EARLY_READS = False
        with caplog.at_level(logging.WARNING, logger="thor.early_reads"):
            lane = EarlyReads(teapot)

        assert not caplog.records
        assert send(lane, f"/api/accounts/{live.pk}/positions", token)[0] == "418 I'm a teapot"
        assert not [message for message in run_checks() if message.id == "thor.W001"]


def teapot(environ, start_response):
    start_response("418 I'm a teapot", [])
    return [b""]
