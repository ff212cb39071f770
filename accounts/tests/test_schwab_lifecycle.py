"""Seed 002 through the Schwab sandbox after linking: tokens refreshed and ended, placements without an answer, publishing."""

import asyncio
from datetime import timedelta

import channels.layers
import pytest
import requests
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from accounts.models import Order
from accounts.placement import live_order_settle
from accounts.streams import account_group
from accounts.tests import test_schwab_end_to_end as end_to_end
from accounts.tests.conftest import place
from accounts.tests.test_consumers import access_token, opened
from accounts.tests.test_schwab_end_to_end import accounts_of, schwab_calls
from brokers.models import BrokerConnection
from brokers.tests.schwab_link_steps import refresh_calls, schwab_fault
from thor.realtime import publish_flush

pytestmark = pytest.mark.django_db

linked = end_to_end.linked


class TestTokenLifecycle:
    def test_an_expired_access_token_is_refreshed_on_demand_once(self, alice_client, linked, schwab_sandbox):
        account = accounts_of(linked)["MARGIN"]
        old_refresh = linked.refresh_token
        BrokerConnection.objects.filter(pk=linked.pk).update(access_expires_at=timezone.now() - timedelta(seconds=1))

        response = alice_client.get(f"/api/accounts/{account.pk}/funds", {"fresh": "true"})

        assert response.status_code == 200, response.json()
        linked.refresh_from_db()
        assert linked.access_expires_at > timezone.now() + timedelta(minutes=20)
        assert linked.refresh_token != old_refresh and linked.status == "active"
        assert refresh_calls(schwab_sandbox)["total"] == 1

    def test_a_token_schwab_stopped_taking_is_refreshed_and_the_call_made_again(
        self, alice_client, linked, schwab_sandbox
    ):
        account = accounts_of(linked)["CASH"]
        requests.post(f"{schwab_sandbox.url}/_sandbox/schwab/expire", json={"what": "access"}, timeout=5)

        response = alice_client.get(f"/api/accounts/{account.pk}/positions", {"fresh": "true"})

        assert response.status_code == 200, response.json()
        assert refresh_calls(schwab_sandbox)["total"] == 1

    def test_a_refused_refresh_expires_the_connection_and_says_why(self, alice_client, linked, schwab_sandbox):
        account = accounts_of(linked)["CASH"]
        requests.post(f"{schwab_sandbox.url}/_sandbox/schwab/expire", json={"what": "refresh"}, timeout=5)
        BrokerConnection.objects.filter(pk=linked.pk).update(access_expires_at=timezone.now() - timedelta(seconds=1))

        response = alice_client.get(f"/api/accounts/{account.pk}/funds")

        assert response.status_code == 409 and response.json()["code"] == "reauth_required"
        linked.refresh_from_db()
        assert linked.status == "expired" and linked.last_error and not linked.refresh_token
        listed = alice_client.get("/api/brokers/connections/").json()
        assert [item["status"] for item in listed if item["id"] == linked.pk] == ["expired"]

    def test_a_connection_whose_refresh_token_ends_within_a_day_is_expiring(self, alice_client, linked):
        due = timezone.now() + timedelta(hours=3)
        BrokerConnection.objects.filter(pk=linked.pk).update(refresh_expires_at=due)

        listed = {item["id"]: item for item in alice_client.get("/api/brokers/connections/").json()}

        assert listed[linked.pk]["status"] == "expiring"
        assert listed[linked.pk]["reauth_due_at"].startswith(due.strftime("%Y-%m-%dT%H:%M"))

    def test_once_the_refresh_token_has_ended_the_api_answers_reauth_required(self, alice_client, linked):
        account = accounts_of(linked)["MARGIN"]
        BrokerConnection.objects.filter(pk=linked.pk).update(
            refresh_expires_at=timezone.now() - timedelta(seconds=1),
            access_expires_at=timezone.now() - timedelta(seconds=1),
        )

        listed = {item["id"]: item for item in alice_client.get("/api/brokers/connections/").json()}
        response = alice_client.get(f"/api/accounts/{account.pk}/funds")

        assert listed[linked.pk]["status"] == "expired"
        assert response.status_code == 409 and response.json()["code"] == "reauth_required"


class TestPlacementWithoutAnAnswer:
    def _place(self, client, account):
        return place(
            client,
            account=account.pk,
            tradingsymbol="AAPL",
            exchange="NASDAQ",
            quantity=1,
            order_type="LIMIT",
            price="1.00",
        )

    def test_an_order_schwab_took_without_a_location_is_found_in_its_book(self, alice_client, linked, schwab_sandbox):
        account = accounts_of(linked)["MARGIN"]
        orders_path = f"/trader/v1/accounts/{account.broker_account_id}/orders"
        schwab_fault(schwab_sandbox, kind="no_location", path=orders_path, count=1)

        response = self._place(alice_client, account)

        assert response.status_code == 201, response.json()
        assert response.json()["broker_order_id"] and response.json()["status"] != "UNKNOWN"
        assert schwab_calls(schwab_sandbox, f"POST {orders_path}") == 1

    def test_a_lost_placement_is_never_sent_again_and_ends_rejected_once_the_book_never_shows_it(
        self, alice_client, linked, schwab_sandbox, settings
    ):
        settings.THOR_PLACEMENT_LOOKUPS = 1
        account = accounts_of(linked)["MARGIN"]
        orders_path = f"/trader/v1/accounts/{account.broker_account_id}/orders"
        schwab_fault(schwab_sandbox, kind="drop", path=orders_path, count=1)

        response = self._place(alice_client, account)

        # Accepted, not confirmed: Thor does not know whether Schwab has it.
        assert response.status_code == 202, response.json()
        order = Order.objects.get(pk=response.json()["id"])
        assert order.status == "UNKNOWN"
        settings.THOR_PLACEMENT_SETTLE_SECONDS = {"kite": 600, "schwab": 0}
        settled = live_order_settle(order=order)

        assert settled.status == "REJECTED"
        assert schwab_calls(schwab_sandbox, f"POST {orders_path}") == 1


class TestPublishing:
    def test_a_fresh_snapshot_makes_the_accounts_sockets_read_their_book_and_a_cached_one_does_not_again(
        self, alice_client, linked, settings
    ):
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        account = accounts_of(linked)["MARGIN"]
        layer = channels.layers.get_channel_layer()
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(account_group(account.pk), channel)

        alice_client.get("/api/schwab/account/positions/", {"account_hash": account.broker_account_id})
        alice_client.get("/api/schwab/account/positions/", {"account_hash": account.broker_account_id})
        alice_client.get("/api/schwab/account/summary/", {"account_hash": account.broker_account_id})

        message = async_to_sync(layer.receive)(channel)
        assert message["type"] == "book.stored" and message["account_id"] == account.pk
        # Nothing else: the cached read tells nobody again, and no message the sockets have no handler for
        # (a `position_update` without a seq ended every socket of the account).
        with pytest.raises(asyncio.TimeoutError):
            async_to_sync(asyncio.wait_for)(layer.receive(channel), 0.2)

    @pytest.mark.django_db(transaction=True)
    def test_an_open_socket_of_the_account_outlives_a_fresh_read_of_its_positions(self, alice, alice_client, linked):
        account = accounts_of(linked)["MARGIN"]
        path = f"/ws/orders/{account.pk}?token={access_token(alice)}"

        async def scenario():
            socket = await opened(path)
            for what in ("positions", "summary"):
                response = await sync_to_async(alice_client.get)(
                    f"/api/schwab/account/{what}/", {"account_hash": account.broker_account_id}
                )
                assert response.status_code == 200
            await sync_to_async(publish_flush)()
            quiet = await socket.receive_nothing(timeout=0.5)  # the socket's handling of what was published
            await socket.send_json_to({"action": "ping"})
            pong = await socket.receive_json_from(timeout=2)
            await socket.disconnect()
            return quiet, pong

        assert async_to_sync(scenario)() == (True, {"type": "pong"})
