"""Reads the caches answer whole, before DRF's cycle (accounts.api.cached_reads): the same status, headers
and bytes as DRF's path, and anything the caches cannot vouch for still goes through DRF.

DRF's path is taken on purpose with an Accept the shortcut does not know (DRF picks JSON for it all the
same), so both answers are of the same warm caches. A spy on APIView.dispatch says which path answered.
"""

from datetime import timedelta
from unittest import mock

import pytest
import requests
import time_machine
from django.utils import timezone
from rest_framework.views import APIView

from accounts.tests.conftest import order_body
from brokers.models import BrokerConnection
from brokers.services import connection_usable_as_is
from brokers.tests.sandbox_fixtures import link
from conftest import client_for
from identity import authentication
from identity.models import User
from identity.tokens import token_pair_for

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

READS = ["positions", "holdings", "funds", "orders"]
DRF_ONLY_ACCEPT = "application/json; charset=utf-8"


@pytest.fixture
def live(sandbox, alice_client):
    requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1500.0}, timeout=5).raise_for_status()
    return link(alice_client)


@pytest.fixture
def dispatch_spy():
    with mock.patch.object(APIView, "dispatch", autospec=True, side_effect=APIView.dispatch) as spy:
        yield spy


def warm(client, path):
    for _ in range(2):
        assert client.get(path).status_code == 200


class TestTheSameAnswer:
    @pytest.mark.parametrize("what", READS)
    def test_status_headers_and_bytes_are_drfs(self, alice_client, live, what, dispatch_spy):
        path = f"/api/accounts/{live.pk}/{what}"
        warm(alice_client, path)
        dispatch_spy.reset_mock()

        through_drf = alice_client.get(path, HTTP_ACCEPT=DRF_ONLY_ACCEPT, HTTP_X_CORRELATION_ID="same-id")
        assert dispatch_spy.call_count == 1
        from_caches = alice_client.get(path, HTTP_X_CORRELATION_ID="same-id")
        assert dispatch_spy.call_count == 1, "answered without DRF's cycle"

        assert from_caches.status_code == through_drf.status_code == 200
        assert from_caches.content == through_drf.content
        assert dict(from_caches.headers) == dict(through_drf.headers)
        assert from_caches["Cache-Control"] == "no-store" and from_caches["Allow"]

    def test_the_primary_alias_too(self, alice_client, live, dispatch_spy):
        alice_client.patch(f"/api/accounts/{live.pk}", {"primary": True}, format="json")
        warm(alice_client, "/api/accounts/primary/positions")
        dispatch_spy.reset_mock()

        assert alice_client.get("/api/accounts/primary/positions").json()["account_id"] == live.pk
        assert dispatch_spy.call_count == 0

    def test_an_order_placed_is_on_the_next_page(self, alice_client, live, django_capture_on_commit_callbacks):
        path = f"/api/accounts/{live.pk}/orders"
        warm(alice_client, path)
        before = len(alice_client.get(path).json()["results"])
        with django_capture_on_commit_callbacks(execute=True):
            placed = alice_client.post(path, order_body(), format="json", HTTP_IDEMPOTENCY_KEY="cached-reads-1")
        assert placed.status_code in (201, 202), placed.content

        assert len(alice_client.get(path).json()["results"]) == before + 1


class TestWhatGoesThroughDrf:
    @pytest.mark.parametrize(
        "extra",
        [
            {"QUERY_STRING": "fresh=1"},
            {"HTTP_ACCEPT": "text/html"},
            {"HTTP_ACCEPT": DRF_ONLY_ACCEPT},
        ],
    )
    def test_reads_asking_for_more(self, alice_client, live, dispatch_spy, extra):
        warm(alice_client, f"/api/accounts/{live.pk}/positions")
        dispatch_spy.reset_mock()

        response = alice_client.get(f"/api/accounts/{live.pk}/positions", **extra)

        assert dispatch_spy.call_count == 1
        assert response.status_code == (406 if extra.get("HTTP_ACCEPT") == "text/html" else 200)

    def test_head_and_a_first_token(self, alice, alice_client, live, dispatch_spy):
        warm(alice_client, f"/api/accounts/{live.pk}/funds")
        dispatch_spy.reset_mock()

        assert alice_client.head(f"/api/accounts/{live.pk}/funds").status_code == 200
        authentication.verified_tokens.clear()
        assert alice_client.get(f"/api/accounts/{live.pk}/funds").status_code == 200
        assert dispatch_spy.call_count == 2

    @pytest.mark.parametrize(
        "header",
        ["Bearer", "Bearer a b", "bearer {token}", "Basic {token}", "Bearer {token}x", "Bearer  ", "Token {token}"],
    )
    def test_hostile_authorization_headers_are_refused_as_before(self, alice, alice_client, live, header):
        warm(alice_client, f"/api/accounts/{live.pk}/positions")
        token = token_pair_for(alice)["access"]

        response = client_for().get(f"/api/accounts/{live.pk}/positions", HTTP_AUTHORIZATION=header.format(token=token))

        assert response.status_code == 401 and response["Content-Type"] == "application/json"
        assert "code" in response.json()

    def test_someone_elses_account_is_a_404_however_often_asked(self, alice_client, bob_client, charlie_client, live):
        warm(alice_client, f"/api/accounts/{live.pk}/positions")
        warm(alice_client, f"/api/accounts/{live.pk}/orders")

        # bob shares alice's tenant, charlie is of another one.
        for client in (bob_client, charlie_client):
            for _ in range(3):
                assert client.get(f"/api/accounts/{live.pk}/positions").status_code == 404
                assert client.get(f"/api/accounts/{live.pk}/orders").status_code == 404

    def test_an_expired_token_is_refused_even_once_verified(self, alice_client, live):
        warm(alice_client, f"/api/accounts/{live.pk}/positions")
        with time_machine.travel(timezone.now() + timedelta(days=1)):
            response = alice_client.get(f"/api/accounts/{live.pk}/positions")

        assert response.status_code == 401


class TestRevocationIsImmediate:
    def test_logging_out(self, alice, live):
        pair = token_pair_for(alice)
        client = client_for(alice)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
        warm(client, f"/api/accounts/{live.pk}/positions")

        assert client.post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json").status_code == 205

        assert client.get(f"/api/accounts/{live.pk}/positions").status_code == 401

    def test_disabling_the_user(self, alice, alice_client, live):
        warm(alice_client, f"/api/accounts/{live.pk}/positions")
        user = User.objects.get(pk=alice.pk)
        user.is_active = False
        user.save()

        assert alice_client.get(f"/api/accounts/{live.pk}/positions").status_code == 401

    def test_an_ended_broker_session_answers_reauth(self, alice_client, live):
        warm(alice_client, f"/api/accounts/{live.pk}/positions")
        connection = live.connection
        connection.status = BrokerConnection.Status.EXPIRED
        connection.save()

        response = alice_client.get(f"/api/accounts/{live.pk}/positions")

        assert response.status_code != 200 and response.json()["code"]


class TestConnectionUsableAsIs:
    def test_only_an_active_session_far_from_its_expiry(self, live):
        connection = live.connection
        now = timezone.now()
        connection.access_expires_at = now + timedelta(hours=6)
        assert connection_usable_as_is(connection)
        connection.access_expires_at = now + timedelta(seconds=1)
        assert not connection_usable_as_is(connection), "a refresh or an expiry is due: DRF's path does it"
        connection.access_expires_at = None
        assert connection_usable_as_is(connection)
        connection.status = BrokerConnection.Status.EXPIRED
        assert not connection_usable_as_is(connection)
