"""The live reads' short account cache (accounts.caches, accounts.selectors.account_for_read_get): no SQL on a hit, and never a wrong answer.

A read answered from the snapshot cache takes its account from a 5-second cache keyed by the user, so
each case warms it first and then checks that what must still hold holds: other users get 404, a
primary switch or an ended session is seen at once, and the bytes are what rendering the answer gives.
"""

import pytest
import requests
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.renderers import JSONRenderer

from accounts import caches, selectors
from accounts.api.serializers import FundsEnvelopeOutputSerializer, PositionsOutputSerializer
from accounts.models import TradingAccount
from brokers.models import BrokerConnection
from brokers.services import connection_revoke, kite_sessions_expire
from brokers.tests.sandbox_fixtures import link
from thor import snapshots

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


@pytest.fixture
def live(sandbox, alice_client):
    requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1500.0}, timeout=5).raise_for_status()
    return link(alice_client)


def warm(client, account, what="positions"):
    """Two reads: the first fills the snapshot and the account cache, the second is answered from both."""
    client.get(f"/api/accounts/{account.pk}/{what}")
    second = client.get(f"/api/accounts/{account.pk}/{what}")
    assert second.status_code == 200 and second.json()["source"] == "cache"
    return second


class TestNoSqlOnAHit:
    @pytest.mark.parametrize("what", ["positions", "holdings", "funds"])
    def test_a_cached_read_runs_no_query(self, alice_client, live, what, django_assert_num_queries):
        warm(alice_client, live, what)

        with django_assert_num_queries(0):
            assert alice_client.get(f"/api/accounts/{live.pk}/{what}").json()["source"] == "cache"

    def test_primary_is_cached_under_its_own_name(self, alice_client, live, django_assert_num_queries):
        alice_client.patch(f"/api/accounts/{live.pk}", {"primary": True}, format="json")
        alice_client.get("/api/accounts/primary/positions")
        alice_client.get("/api/accounts/primary/positions")

        with django_assert_num_queries(0):
            assert alice_client.get("/api/accounts/primary/positions").json()["account_id"] == live.pk

    def test_the_orders_page_of_a_live_account_runs_only_its_own_query(
        self, alice_client, live, django_assert_num_queries
    ):
        warm(alice_client, live)

        with django_assert_num_queries(1):
            assert alice_client.get(f"/api/accounts/{live.pk}/orders").status_code == 200

    def test_a_paper_account_is_never_kept(self, alice, alice_client):
        alice_client.get("/api/accounts/primary/funds")

        assert cache.get(caches.read_account_key(alice.pk, "primary")) is None


class TestAMissOnTheCachedAccount:
    def test_reads_its_session_tokens_and_app_keys_in_one_query_not_one_a_field(self, alice_client, live):
        warm(alice_client, live)
        snapshots.forget(snapshots.key("acme", live.pk, "positions"))

        with CaptureQueriesContext(connection) as queries:
            assert alice_client.get(f"/api/accounts/{live.pk}/positions").json()["source"] == "live"

        broker_rows = [query["sql"] for query in queries if query["sql"].startswith('SELECT "brokers_broker')]
        assert len(broker_rows) == 1, broker_rows


class TestSameAnswers:
    def test_live_and_cached_bodies_are_the_rendered_envelopes(self, alice_client, live):
        first = alice_client.get(f"/api/accounts/{live.pk}/positions")
        second = alice_client.get(f"/api/accounts/{live.pk}/positions")

        snapshot = snapshots.peek(snapshots.key("acme", live.pk, "positions"))
        for response, source in ((first, "live"), (second, "cache")):
            body = {"account_id": live.pk, "source": source, "as_of": snapshot.as_of, "data": snapshot.data}
            assert response.content == JSONRenderer().render(PositionsOutputSerializer(body).data)
            assert response["Content-Type"] == "application/json"
            assert response["Cache-Control"] == "no-store" and response["X-Correlation-ID"]

    def test_a_paper_read_is_the_rendered_envelope_too(self, alice, alice_client):
        from django.utils.dateparse import parse_datetime

        response = alice_client.get("/api/accounts/primary/funds")

        account = TradingAccount.objects.get(user=alice, is_primary=True)
        as_of = parse_datetime(response.json()["as_of"])
        body = {
            "account_id": account.pk,
            "source": "live",
            "as_of": as_of,
            "data": selectors.funds_get(account=account).data,
        }
        assert response.content == JSONRenderer().render(FundsEnvelopeOutputSerializer(body).data)


class TestStillScopedByUser:
    def test_other_users_still_get_404_for_a_cached_account(self, alice_client, bob_client, charlie_client, live):
        warm(alice_client, live)

        for client in (bob_client, charlie_client):
            for what in ("positions", "holdings", "funds", "orders"):
                assert client.get(f"/api/accounts/{live.pk}/{what}").status_code == 404

    def test_another_users_primary_is_their_own(self, alice_client, bob, bob_client, live):
        alice_client.patch(f"/api/accounts/{live.pk}", {"primary": True}, format="json")
        warm(alice_client, live)
        alice_client.get("/api/accounts/primary/positions")

        bobs = bob_client.get("/api/accounts/primary/positions").json()

        assert bobs["account_id"] == TradingAccount.objects.get(user=bob, is_primary=True).pk != live.pk

    @pytest.mark.parametrize("ref", ["primary-ish", "²", "1 OR 1=1", "9" * 30])
    def test_a_malformed_reference_is_a_404_and_never_a_cache_key(self, alice, alice_client, live, ref):
        warm(alice_client, live)

        assert alice_client.get(f"/api/accounts/{ref}/positions").status_code == 404
        assert cache.get(caches.read_account_key(alice.pk, ref)) is None


class TestChangesAreSeenAtOnce:
    def test_a_new_primary_account(self, alice, alice_client, live, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            alice_client.patch(f"/api/accounts/{live.pk}", {"primary": True}, format="json")
        alice_client.get("/api/accounts/primary/positions")
        assert alice_client.get("/api/accounts/primary/positions").json()["account_id"] == live.pk
        paper = TradingAccount.objects.get(user=alice, mode="paper")

        # The cached account is flushed once the change is committed (before, a read could cache it again).
        with django_capture_on_commit_callbacks(execute=True):
            response = alice_client.patch(f"/api/accounts/{paper.pk}", {"primary": True}, format="json")
        assert response.status_code == 200

        assert alice_client.get("/api/accounts/primary/positions").json()["account_id"] == paper.pk

    def test_a_revoked_connection(self, alice_client, live, django_capture_on_commit_callbacks):
        warm(alice_client, live)

        # The caches hear of it once the change is committed (before, a read could cache the old row again).
        with django_capture_on_commit_callbacks(execute=True):
            connection_revoke(connection=BrokerConnection.objects.get(pk=live.connection_id))

        response = alice_client.get(f"/api/accounts/{live.pk}/positions")
        assert response.status_code == 409 and response.json()["code"] == "reauth_required"

    def test_sessions_ended_by_the_daily_expiry(self, alice_client, live, django_capture_on_commit_callbacks):
        from django.utils import timezone

        warm(alice_client, live, "funds")
        BrokerConnection.objects.filter(pk=live.connection_id).update(access_expires_at=timezone.now())
        # The bulk update above sends nothing; the daily task that ends the sessions does.
        assert alice_client.get(f"/api/accounts/{live.pk}/funds").status_code == 200

        with django_capture_on_commit_callbacks(execute=True):
            assert kite_sessions_expire() == 1

        response = alice_client.get(f"/api/accounts/{live.pk}/funds")
        assert response.status_code == 409 and response.json()["code"] == "reauth_required"

    def test_a_bulk_update_is_seen_within_the_ttl(self, alice_client, live, settings, time_passes):
        settings.THOR_READ_CACHE_SECONDS = 1
        warm(alice_client, live)
        BrokerConnection.objects.filter(pk=live.connection_id).update(status=BrokerConnection.Status.EXPIRED)

        time_passes(1.2)

        response = alice_client.get(f"/api/accounts/{live.pk}/positions")
        assert response.status_code == 409 and response.json()["code"] == "reauth_required"

    def test_with_the_cache_off_every_read_loads_the_account(self, alice_client, live, settings):
        settings.THOR_READ_CACHE_SECONDS = 0
        warm(alice_client, live)
        BrokerConnection.objects.filter(pk=live.connection_id).update(status=BrokerConnection.Status.EXPIRED)

        assert alice_client.get(f"/api/accounts/{live.pk}/positions").status_code == 409
