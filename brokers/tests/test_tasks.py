"""Kite sessions end at 06:00 IST: the beat task and the command mark them expired."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from brokers.models import BrokerConnection
from brokers.tasks import expire_kite_sessions
from brokers.tests.factories import linked_kite_account

pytestmark = pytest.mark.django_db


def past(**delta):
    return timezone.now() - timedelta(**delta)


def test_the_task_expires_only_sessions_past_their_end(alice, bob):
    ended = linked_kite_account(alice, access_expires_at=past(minutes=1)).connection
    live = linked_kite_account(bob).connection

    assert expire_kite_sessions.delay().get() == 1

    ended.refresh_from_db()
    live.refresh_from_db()
    assert (ended.status, ended.access_token, ended.last_error) == ("expired", "", "session_expired")
    assert live.status == "active" and live.access_token


def test_revoked_connections_stay_revoked(alice):
    connection = linked_kite_account(alice, status="revoked", access_expires_at=past(hours=1)).connection

    expire_kite_sessions()

    connection.refresh_from_db()
    assert connection.status == "revoked"


def test_the_command_reports_how_many(alice):
    linked_kite_account(alice, access_expires_at=past(seconds=1))
    out = StringIO()

    call_command("expire_kite_sessions", stdout=out)

    assert "1 Kite session(s) marked expired" in out.getvalue()
    assert BrokerConnection.objects.get().status == "expired"


def test_an_api_read_after_the_end_asks_to_relink_without_calling_kite(alice, alice_client):
    linked_kite_account(alice, access_expires_at=past(seconds=1))

    response = alice_client.get("/api/portfolio/holdings")

    assert response.status_code == 409 and response.json()["code"] == "reauth_required"
    assert BrokerConnection.objects.get().status == "expired"
