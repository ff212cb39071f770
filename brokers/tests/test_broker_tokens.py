"""Schwab access tokens are renewed ahead of expiry and on demand, once per connection, never twice."""

import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection as db_connection
from django.utils import timezone

from brokers.models import BrokerConnection
from brokers.services.tokens import connection_tokens_refresh, refresh_due_connection_ids
from brokers.tasks import refresh_due_broker_tokens
from brokers.tests import schwab_link_steps
from brokers.tests.factories import linked_kite_account
from brokers.tests.schwab_link_steps import refresh_calls, schwab_fault, seeded_connections
from identity.tests.factories import UserFactory

schwab_sandbox = schwab_link_steps.schwab_sandbox
schwab_app = schwab_link_steps.schwab_app


def soon(**delta):
    return timezone.now() + timedelta(**delta)


@pytest.mark.django_db
class TestBeat:
    def test_the_beat_task_refreshes_only_what_expires_within_the_lead(
        self, alice, bob, schwab_sandbox, schwab_app, settings
    ):
        settings.THOR_BROKER_REFRESH_LEAD_SECONDS = 300
        due, later = seeded_connections(schwab_sandbox, schwab_app, [alice, bob], access_seconds=1800)
        BrokerConnection.objects.filter(pk=due.pk).update(access_expires_at=soon(minutes=2))

        assert refresh_due_broker_tokens.delay().get() == 1

        due.refresh_from_db()
        later.refresh_from_db()
        assert due.access_expires_at > soon(minutes=25) and due.status == "active"
        assert later.access_expires_at < soon(minutes=31)
        assert refresh_calls(schwab_sandbox)["total"] == 1

    def test_kite_connections_are_never_refreshed(self, alice):
        linked_kite_account(alice, access_expires_at=soon(minutes=1))

        assert refresh_due_connection_ids() == []

    def test_each_run_hands_out_no_more_than_the_apps_token_budget_soonest_first(
        self, tenant, schwab_sandbox, schwab_app, settings
    ):
        settings.THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE = 3
        settings.THOR_BROKER_REFRESH_EVERY_SECONDS = 60
        users = [UserFactory(tenant=tenant) for _ in range(5)]
        connections = seeded_connections(schwab_sandbox, schwab_app, users, access_seconds=60)
        for offset, connection in enumerate(connections):
            BrokerConnection.objects.filter(pk=connection.pk).update(access_expires_at=soon(seconds=60 - offset))

        assert refresh_due_connection_ids() == [connection.pk for connection in reversed(connections)][:3]

    def test_a_refresh_token_past_its_end_expires_the_connection_without_calling_schwab(
        self, alice, schwab_sandbox, schwab_app
    ):
        (connection,) = seeded_connections(schwab_sandbox, schwab_app, [alice], access_seconds=60)
        BrokerConnection.objects.filter(pk=connection.pk).update(refresh_expires_at=timezone.now())

        outcome = connection_tokens_refresh(connection_id=connection.pk)

        connection.refresh_from_db()
        assert outcome.action == "expired"
        assert (connection.status, connection.last_error) == ("expired", "refresh_token_expired")
        assert refresh_calls(schwab_sandbox)["total"] == 0

    def test_schwab_unavailable_leaves_the_connection_active_to_try_again(self, alice, schwab_sandbox, schwab_app):
        (connection,) = seeded_connections(schwab_sandbox, schwab_app, [alice], access_seconds=60)
        schwab_fault(schwab_sandbox, kind="5xx", path="/v1/oauth/token", count=1)

        failed = connection_tokens_refresh(connection_id=connection.pk)
        again = connection_tokens_refresh(connection_id=connection.pk)

        assert (failed.action, again.action) == ("failed", "refreshed")
        connection.refresh_from_db()
        assert connection.status == "active" and connection.last_error == ""


@pytest.mark.django_db
class TestCommand:
    def test_dry_run_says_what_it_would_refresh_and_changes_nothing(self, alice, schwab_sandbox, schwab_app):
        (connection,) = seeded_connections(schwab_sandbox, schwab_app, [alice], access_seconds=60)
        out = StringIO()

        call_command("refresh_broker_tokens", "--dry-run", stdout=out)

        assert f"connection {connection.pk}: would be refreshed" in out.getvalue()
        assert "(dry run)" in out.getvalue()
        assert refresh_calls(schwab_sandbox)["total"] == 0

    def test_a_users_connections_are_refreshed_now_due_or_not(self, alice, bob, schwab_sandbox, schwab_app):
        mine, theirs = seeded_connections(schwab_sandbox, schwab_app, [alice, bob], access_seconds=1800)
        out = StringIO()

        call_command("refresh_broker_tokens", "--broker", "schwab", "--user", alice.email, stdout=out)

        assert f"connection {mine.pk}: refreshed" in out.getvalue()
        assert f"connection {theirs.pk}" not in out.getvalue()
        assert refresh_calls(schwab_sandbox)["total"] == 1

    def test_an_unknown_user_is_an_error(self, db):
        with pytest.raises(Exception, match="No broker connections"):
            call_command("refresh_broker_tokens", "--user", "nobody@acme.test", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_two_workers_refreshing_one_connection_call_schwab_once(alice, schwab_sandbox, schwab_app):
    """Each thread has its own database connection, as two worker processes would; the token
    endpoint is slowed so that both are in the refresh at the same moment."""
    (connection,) = seeded_connections(schwab_sandbox, schwab_app, [alice], access_seconds=30)
    schwab_fault(schwab_sandbox, kind="latency", ms=400, path="/v1/oauth/token")
    outcomes, barrier = [], threading.Barrier(2)

    def worker():
        try:
            barrier.wait()
            outcomes.append(connection_tokens_refresh(connection_id=connection.pk).action)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["fresh", "refreshed"]
    assert refresh_calls(schwab_sandbox)["total"] == 1
    connection.refresh_from_db()
    assert connection.status == "active" and connection.access_expires_at > soon(minutes=25)


@pytest.mark.django_db(transaction=True)
def test_a_batch_skips_a_connection_another_worker_is_refreshing(alice, schwab_sandbox, schwab_app):
    (connection,) = seeded_connections(schwab_sandbox, schwab_app, [alice], access_seconds=30)
    schwab_fault(schwab_sandbox, kind="latency", ms=600, path="/v1/oauth/token")
    holding = threading.Event()
    results = {}

    def on_demand():
        try:
            holding.set()
            results["on_demand"] = connection_tokens_refresh(connection_id=connection.pk).action
        finally:
            db_connection.close()

    thread = threading.Thread(target=on_demand)
    thread.start()
    holding.wait()
    time.sleep(0.2)  # the on-demand refresh holds the row lock, waiting on Schwab
    results["batch"] = connection_tokens_refresh(connection_id=connection.pk, wait=False).action
    thread.join(timeout=30)

    assert results == {"on_demand": "refreshed", "batch": "skipped"}
    assert refresh_calls(schwab_sandbox)["total"] == 1


@pytest.mark.django_db
def test_a_session_the_refresh_finds_ended_is_announced_once_committed(alice, django_capture_on_commit_callbacks):
    """Whoever caches the session's state (accounts.caches) hears of it, and only after the commit."""
    from brokers.models import BrokerKind
    from brokers.signals import connection_ended
    from brokers.tests.factories import BrokerAppFactory, BrokerConnectionFactory

    app = BrokerAppFactory(tenant=alice.tenant, kind=BrokerKind.SCHWAB)
    connection = BrokerConnectionFactory(
        user=alice, app=app, refresh_token="r", refresh_expires_at=timezone.now() - timedelta(seconds=1)
    )
    heard = []

    def hear(sender, connection_ids, **kwargs):
        heard.extend(connection_ids)

    connection_ended.connect(hear)
    try:
        with django_capture_on_commit_callbacks(execute=False) as pending:
            outcome = connection_tokens_refresh(connection_id=connection.pk)
            assert heard == []
        for callback in pending:
            callback()
    finally:
        connection_ended.disconnect(hear)

    assert outcome.action == "expired"
    assert heard == [connection.pk]
