"""The live reads as a WSGI server (granian) hands them to Thor: one path, Django's stack and DRF's cycle,
whatever the caches hold. Each read is warmed first (a first read fills the snapshot and the account
caches, the second is answered from them), so every case here is about a read the caches answer.
"""

import contextlib
import io
import json
from urllib.parse import unquote_to_bytes, urlsplit

import pytest
import requests
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory

from brokers.tests.sandbox_fixtures import link, sandbox_fault
from conftest import client_for
from identity.models import User
from identity.services import users_disable
from identity.tokens import token_pair_for

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

READS = ["positions", "holdings", "funds", "orders"]
ALLOWED_ORIGIN = "http://localhost:5173"  # the acme tenant's


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


def send(path, token=None, method="GET", **extra):
    """(status, headers, body) of one request to Django's WSGI handler, as a WSGI server sends it."""
    if token is not None:
        extra.setdefault("HTTP_AUTHORIZATION", f"Bearer {token}")
    environ = RequestFactory().generic(method, path, **extra).environ
    environ["wsgi.input"] = io.BytesIO(b"")
    # As a WSGI server gives it: the path's bytes as latin-1 text (the factory's request decoded it to UTF-8).
    environ["PATH_INFO"] = unquote_to_bytes(urlsplit(path).path).decode("iso-8859-1")
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(headers)

    with connections_kept_open():
        chunks = WSGIHandler()(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            chunks.close()
    return answer["status"], answer["headers"], body


@pytest.fixture
def live(sandbox, alice_client):
    requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1500.0}, timeout=5).raise_for_status()
    return link(alice_client)


@pytest.fixture
def token(alice):
    return token_pair_for(alice)["access"]


def warmed(path, token):
    for _ in range(2):
        status, _, body = send(path, token)
        assert status == "200 OK", body


class TestHeaders:
    @pytest.mark.parametrize("what", READS)
    @pytest.mark.parametrize("origin", [None, ALLOWED_ORIGIN, "https://evil.test"])
    def test_no_store_correlation_id_and_cors(self, live, token, what, origin):
        path = f"/api/accounts/{live.pk}/{what}"
        warmed(path, token)
        extra = {"HTTP_ORIGIN": origin} if origin else {}

        status, headers, body = send(path, token, HTTP_X_CORRELATION_ID="same-id", **extra)

        assert status == "200 OK" and headers["Content-Type"] == "application/json"
        assert headers["Cache-Control"] == "no-store" and headers["X-Correlation-ID"] == "same-id"
        assert headers["Content-Length"] == str(len(body))
        if origin == ALLOWED_ORIGIN:
            assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        else:
            assert "access-control-allow-origin" not in headers
        if what != "orders":
            assert json.loads(body)["source"] == "cache"

    def test_a_correlation_id_is_made_when_none_is_sent(self, live, token):
        path = f"/api/accounts/{live.pk}/positions"
        warmed(path, token)

        first, second = send(path, token)[1]["X-Correlation-ID"], send(path, token)[1]["X-Correlation-ID"]

        assert first and second and first != second


class TestRefused:
    @pytest.mark.parametrize(
        "header",
        ["Bearer", "Bearer a b", "bearer {token}", "Basic {token}", "Bearer {token}x", "Bearer  ", "Token {token}", ""],
    )
    def test_hostile_authorization_headers_are_401_json(self, live, token, header):
        path = f"/api/accounts/{live.pk}/positions"
        warmed(path, token)

        status, headers, body = send(path, HTTP_AUTHORIZATION=header.format(token=token))

        assert status == "401 Unauthorized" and headers["Content-Type"] == "application/json"
        assert b'"code"' in body

    @pytest.mark.parametrize("header", ["Bearer x", "Bearer {token}"])
    def test_a_path_that_is_not_ascii_is_401_or_404_json_never_a_500(self, live, token, header):
        status, headers, body = send("/api/accounts/%E2%82%AC/orders/", HTTP_AUTHORIZATION=header.format(token=token))

        assert status in ("401 Unauthorized", "404 Not Found"), (status, body)
        assert headers["Content-Type"] == "application/json" and b'"code"' in body

    def test_someone_elses_account_is_a_404_however_often_asked(self, live, token, bob, charlie):
        for what in READS:
            warmed(f"/api/accounts/{live.pk}/{what}", token)
        # bob shares alice's tenant, charlie is of another one.
        for someone in (bob, charlie):
            their_token = token_pair_for(someone)["access"]
            for _ in range(3):
                for what in READS:
                    assert send(f"/api/accounts/{live.pk}/{what}", their_token)[0] == "404 Not Found"

    def test_logging_out_is_refused_at_once(self, alice, live):
        pair = token_pair_for(alice)
        path = f"/api/accounts/{live.pk}/positions"
        warmed(path, pair["access"])
        client = client_for()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")

        assert client.post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json").status_code == 205

        assert send(path, pair["access"])[0] == "401 Unauthorized"

    def test_a_user_disabled_by_the_admins_action_is_refused_at_once(
        self, alice, live, token, django_capture_on_commit_callbacks
    ):
        path = f"/api/accounts/{live.pk}/positions"
        warmed(path, token)

        # What the admin's "Disable selected users" runs (identity.admin): the cached user goes on commit.
        with django_capture_on_commit_callbacks(execute=True):
            assert users_disable(users=User.objects.filter(pk=alice.pk)) == 1

        status, _, body = send(path, token)
        assert status == "401 Unauthorized" and json.loads(body)["code"] == "user_inactive"


class TestWhenTheBrokerOrRedisFails:
    def test_past_the_fresh_period_the_last_good_snapshot_is_answered_marked_stale(
        self, settings, sandbox, live, token, time_passes
    ):
        settings.THOR_LIVE_FRESH_SECONDS = 1
        path = f"/api/accounts/{live.pk}/positions"
        warmed(path, token)
        first = json.loads(send(path, token)[2])
        assert first["source"] == "cache"
        time_passes(1.2)  # the fresh copy's time in Redis runs out
        sandbox_fault(sandbox, kind="5xx", path="/portfolio/positions", count=10)

        for _ in range(2):
            status, _, body = send(path, token)

            assert status == "200 OK"
            answer = json.loads(body)
            assert answer["source"] == "stale" and (answer["as_of"], answer["data"]) == (first["as_of"], first["data"])

    def test_with_redis_gone_the_read_goes_to_the_database_and_the_broker(self, settings, live, token):
        path = f"/api/accounts/{live.pk}/positions"
        warmed(path, token)
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://127.0.0.1:1/0",
                "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.1, "SOCKET_TIMEOUT": 0.1},
            }
        }

        status, _, body = send(path, token)

        assert status == "200 OK" and json.loads(body)["source"] == "live"
