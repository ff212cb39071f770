"""The order WebSocket: sign-in, tenancy, heartbeat, frame limits, and the updates order changes publish.

Sockets run on the real channel layer (Redis under `make test`); order changes must commit to be
published, hence transactional tests. Each test drives its sockets in one coroutine run by
async_to_sync, and reaches the database and the REST API through sync_to_async.
"""

import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils.dateparse import parse_datetime
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.consumers import MAX_FRAME_CHARS, MAX_FRAMES_PER_MINUTE
from accounts.models import OrderEvent, TradingAccount
from accounts.services import trading_account_create_paper
from accounts.tests.communicators import BoundedCommunicator
from accounts.tests.conftest import order_body, place
from conftest import client_for
from identity.models import User
from identity.tokens import token_pair_for
from thor.realtime import publish_flush
from thor.routing import websocket_application

pytestmark = pytest.mark.django_db(transaction=True)

DEAD_REDIS = "redis://127.0.0.1:1/0"


def access_token(user) -> str:
    return token_pair_for(user)["access"]


def socket(path: str, **kwargs) -> BoundedCommunicator:
    return BoundedCommunicator(websocket_application, path, **kwargs)


def connect(path: str, **kwargs) -> tuple[bool, object]:
    """(True, subprotocol) for a socket that opens (its first message says what it follows), or (False,
    close code) for a refusal.

    A refusal is accepted and then closed, so a browser sees the code and not a bare HTTP 403.
    """

    async def scenario():
        communicator = socket(path, **kwargs)
        connected, subprotocol = await communicator.connect()
        assert connected, subprotocol
        first = await communicator.receive_output(timeout=1)
        if first["type"] == "websocket.send":
            assert json.loads(first["text"])["type"] == "subscribed", first
            await communicator.disconnect()
            return True, subprotocol
        assert first["type"] == "websocket.close", first
        # As a server would: tell the consumer the socket is gone, so that it ends within this scenario.
        await communicator.disconnect(code=first["code"])
        return False, first["code"]

    return async_to_sync(scenario)()


async def opened(path: str, *, following: int = 1, **kwargs) -> BoundedCommunicator:
    """An open socket, past the `subscribed` message of each of the `following` accounts it follows."""
    communicator = socket(path, **kwargs)
    connected, detail = await communicator.connect()
    assert connected, detail
    for _ in range(following):
        subscribed = await communicator.receive_json_from(timeout=2)
        assert subscribed["type"] == "subscribed", subscribed
    return communicator


async def received(communicator: BoundedCommunicator, count: int) -> list[dict]:
    return [await communicator.receive_json_from(timeout=2) for _ in range(count)]


def primary_id(user) -> int:
    return TradingAccount.objects.get(user=user, is_primary=True).pk


@pytest.fixture
def in_memory_channel_layer(settings):
    """For the sign-in tests, which the layer plays no part in: a consumer refused at connect takes a
    second to stop on the Redis layer (asgiref's wait runs out), a second per refusal."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.mark.usefixtures("in_memory_channel_layer")
class TestSignIn:
    def test_token_as_query_parameter(self, alice):
        assert connect(f"/ws/orders/primary?token={access_token(alice)}") == (True, None)

    def test_the_socket_closes_when_its_token_expires(self, alice):
        token = AccessToken.for_user(alice)
        token.set_exp(lifetime=timedelta(seconds=1))

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={token}")
            closing = await communicator.receive_output(timeout=3)
            await communicator.disconnect(code=closing["code"])
            return closing

        closing = async_to_sync(scenario)()

        assert closing == {"type": "websocket.close", "code": 4401}

    def test_token_as_subprotocol_pair_echoes_bearer(self, alice):
        assert connect("/ws/orders/primary", subprotocols=["bearer", access_token(alice)]) == (True, "bearer")

    def test_paths_answer_with_a_trailing_slash(self, alice):
        assert connect(f"/ws/orders/primary/?token={access_token(alice)}") == (True, None)
        assert connect(f"/ws/orders/?token={access_token(alice)}") == (True, None)

    def test_no_token(self, alice):
        assert connect("/ws/orders/primary") == (False, 4401)

    def test_a_bearer_subprotocol_without_a_token(self, alice):
        assert connect("/ws/orders/primary", subprotocols=["bearer"]) == (False, 4401)

    def test_garbage_token(self, alice):
        assert connect("/ws/orders/primary?token=not-a-jwt") == (False, 4401)

    def test_expired_token(self, alice):
        token = AccessToken.for_user(alice)
        token.set_exp(lifetime=-timedelta(seconds=1))

        assert connect(f"/ws/orders/primary?token={token}") == (False, 4401)

    def test_refresh_token_is_not_an_access_token(self, alice):
        assert connect(f"/ws/orders/primary?token={RefreshToken.for_user(alice)}") == (False, 4401)

    def test_inactive_user(self, alice):
        token = access_token(alice)
        alice.is_active = False
        alice.save()

        assert connect(f"/ws/orders/primary?token={token}") == (False, 4401)


@pytest.mark.usefixtures("in_memory_channel_layer")
class TestTenancy:
    @pytest.mark.parametrize("intruder", ["bob", "charlie"])
    def test_another_users_account_is_not_found(self, request, alice, intruder):
        token = access_token(request.getfixturevalue(intruder))

        assert connect(f"/ws/orders/{primary_id(alice)}?token={token}") == (False, 4404)

    @pytest.mark.parametrize("ref", ["999999999", "abc", "1.5", "٣"])
    def test_unknown_accounts_are_not_found(self, alice, ref):
        assert connect(f"/ws/orders/{ref}?token={access_token(alice)}") == (False, 4404)

    def test_own_account_by_id(self, alice):
        assert connect(f"/ws/orders/{primary_id(alice)}?token={access_token(alice)}") == (True, None)


class TestFrames:
    def test_every_heartbeat_is_answered_with_json(self, alice):
        # Seed 001's hook sends the plain-text `ping` and JSON.parses every message it receives.
        path = f"/ws/orders/primary?token={access_token(alice)}"

        async def scenario():
            communicator = await opened(path)
            answers = []
            for frame in ("ping", '{"type": "ping"}', '{"action": "ping"}'):
                await communicator.send_to(text_data=frame)
                answers.append(await communicator.receive_from())
            await communicator.disconnect()
            return answers

        answers = async_to_sync(scenario)()

        assert [json.loads(answer) for answer in answers] == [{"type": "pong"}] * 3

    def test_garbage_gets_an_error_and_the_socket_stays_open(self, alice):
        path = f"/ws/orders/primary?token={access_token(alice)}"

        async def scenario():
            communicator = await opened(path)
            answers = []
            for frame in ("{not json", '{"type": "subscribe"}', "[1, 2]", "x" * (MAX_FRAME_CHARS + 1)):
                await communicator.send_to(text_data=frame)
                answers.append(await communicator.receive_json_from())
            await communicator.send_to(bytes_data=b"ping")
            answers.append(await communicator.receive_json_from())
            await communicator.send_to(text_data="ping")
            still_open = await communicator.receive_json_from()
            await communicator.disconnect()
            return answers, still_open

        answers, still_open = async_to_sync(scenario)()

        assert [answer["code"] for answer in answers] == [
            "invalid_json",
            "unknown_message",
            "unknown_message",
            "frame_too_large",
            "text_frames_only",
        ]
        assert all(answer["type"] == "error" and answer["detail"] for answer in answers)
        assert still_open == {"type": "pong"}

    def test_too_many_frames_closes_with_4429(self, alice):
        path = f"/ws/orders/primary?token={access_token(alice)}"

        async def scenario():
            communicator = await opened(path)
            for _ in range(MAX_FRAMES_PER_MINUTE + 1):
                await communicator.send_to(text_data="ping")
            pongs = [await communicator.receive_json_from() for _ in range(MAX_FRAMES_PER_MINUTE)]
            closing = await communicator.receive_output()
            await communicator.disconnect()
            return pongs, closing

        pongs, closing = async_to_sync(scenario)()

        assert pongs == [{"type": "pong"}] * MAX_FRAMES_PER_MINUTE
        assert closing == {"type": "websocket.close", "code": 4429}


class TestUpdates:
    def test_a_paper_market_order_reaches_its_account_only(self, alice, bob):
        alice_client = client_for(alice)
        alice_path, bob_path = (f"/ws/orders/primary?token={access_token(user)}" for user in (alice, bob))

        async def scenario():
            alices = await opened(alice_path)
            bobs = await opened(bob_path)
            response = await sync_to_async(place)(alice_client)
            messages = await received(alices, 4)
            assert await bobs.receive_nothing(timeout=0.3)
            assert await alices.receive_nothing(timeout=0.1)
            await alices.disconnect()
            await bobs.disconnect()
            return response, messages

        response, messages = async_to_sync(scenario)()

        assert response.status_code == 201
        order = response.json()
        account_id = primary_id(alice)
        placed, filled, positions, funds = messages
        assert [message["seq"] for message in messages] == [1, 2, 3, 4]
        assert {message["account_id"] for message in messages} == {account_id}
        assert placed["type"] == "order_update" and placed["data"]["id"] == order["id"]
        assert placed["data"]["status"] != "COMPLETE"
        # The same order JSON as the REST API's answer.
        assert filled["type"] == "order_update" and filled["data"] == order
        assert filled["data"]["status"] == "COMPLETE"
        # A fill carries the new positions and funds, as the REST API shows them.
        assert positions["type"] == "position_update"
        assert positions["data"] == alice_client.get("/api/accounts/primary/positions").json()["data"]
        assert funds["type"] == "funds_update"
        assert funds["data"] == alice_client.get("/api/accounts/primary/funds").json()["data"]
        assert all(parse_datetime(message["as_of"]).tzinfo for message in messages)

    def test_a_rolled_back_batch_publishes_nothing(self, alice):
        alice_client = client_for(alice)
        # The first leg is placed and filled (15,000 of the 100,000 cash) before the second finds too
        # little cash left: the batch is one transaction and rolls back whole.
        body = {"orders": [order_body(quantity=10), order_body(quantity=60)]}
        path = f"/ws/orders/primary?token={access_token(alice)}"

        async def scenario():
            alices = await opened(path)
            response = await sync_to_async(alice_client.post)("/api/accounts/primary/batch-orders", body, format="json")
            assert await alices.receive_nothing(timeout=0.3)
            await alices.disconnect()
            return response

        response = async_to_sync(scenario)()

        assert response.status_code == 400, response.json()
        assert list(response.json()["errors"]) == ["orders.1.quantity"]
        assert not TradingAccount.objects.get(pk=primary_id(alice)).orders.exists()

    def test_the_all_accounts_socket_hears_every_account_of_the_user(self, alice, bob):
        second = trading_account_create_paper(user=alice, currency="USD")
        alice_client = client_for(alice)
        alice_path, bob_path = (f"/ws/orders?token={access_token(user)}" for user in (alice, bob))

        async def scenario():
            alices = await opened(alice_path, following=2)
            bobs = await opened(bob_path)
            await sync_to_async(place)(alice_client)
            await sync_to_async(place)(alice_client, account=str(second.pk), tradingsymbol="AAPL", exchange="NASDAQ")
            messages = await received(alices, 8)
            assert await bobs.receive_nothing(timeout=0.3)
            await alices.disconnect()
            await bobs.disconnect()
            return messages

        messages = async_to_sync(scenario)()

        fills = [message for message in messages if message["type"] == "position_update"]
        assert [fill["account_id"] for fill in fills] == [primary_id(alice), second.pk]
        # Each account's stream counts on its own.
        for account_id in (primary_id(alice), second.pk):
            assert [m["seq"] for m in messages if m["account_id"] == account_id] == [1, 2, 3, 4]

    def test_an_order_is_placed_while_the_channel_layer_is_down(self, alice, settings, caplog):
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [DEAD_REDIS]}}
        }

        response = place(client_for(alice))
        publish_flush()  # the process's publishing loop sends after the answer, and logs its failure then

        assert response.status_code == 201, response.json()
        assert response.json()["status"] == "COMPLETE"
        assert "Could not publish" in caplog.text


class TestStatus:
    pytestmark = pytest.mark.django_db

    def test_needs_a_token(self, anon_client):
        response = anon_client.get("/api/ws/status")

        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"

    def test_a_user_sees_the_endpoints_and_their_own_sockets_only(self, alice_client):
        for path in ("/api/ws/status", "/api/ws/status/"):
            response = alice_client.get(path)

            assert response.status_code == 200
            assert response.json() == {
                "endpoints": ["/ws/orders", "/ws/orders/{account_id}"],
                "your_connections": 0,
                "connections_scope": "yours",
                "connections": None,
                "channel_layer": None,
            }

    def test_a_tenant_admin_sees_the_channel_layer_and_the_tenants_sockets(self, alice, bob, settings):
        bob.role = User.Role.TENANT_ADMIN
        bob.save()

        body = client_for(bob).get("/api/ws/status").json()

        assert (body["connections_scope"], body["channel_layer"]) == ("tenant", "ok")
        assert set(body["connections"]) == {"account", "all"}

    def test_reports_a_channel_layer_that_is_down(self, bob, settings):
        bob.role = User.Role.OPS
        bob.save()
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [DEAD_REDIS]}}
        }

        body = client_for(bob).get("/api/ws/status").json()

        assert (body["connections_scope"], body["channel_layer"]) == ("all", "error: ConnectionError")


class TestBrokerUpdatesReachSockets:
    """Issue 7: a Kite fill that arrives by postback reached the order book but never the socket."""

    def test_a_postback_fill_arrives_at_the_subscribed_socket(self, alice, anon_client):
        from accounts.tests.test_postbacks import sbin_order, signed
        from brokers.tests.factories import linked_kite_account

        account = linked_kite_account(alice, broker_user_id="AB1234")
        order = sbin_order(account, client_order_id="thor-1", broker_order_id="220303000308932", status="OPEN")
        path = f"/ws/orders/{account.pk}?token={access_token(alice)}"

        async def scenario():
            communicator = await opened(path)
            answer = await sync_to_async(anon_client.post)("/api/brokers/kite/postback/", signed(), format="json")
            assert answer.status_code == 200 and answer.json()["applied"], answer.json()
            messages = await received(communicator, 3)
            await communicator.disconnect()
            return messages

        order_update, position_update, funds_update = async_to_sync(scenario)()

        assert order_update["type"] == "order_update" and order_update["account_id"] == account.pk
        assert (order_update["data"]["id"], order_update["data"]["status"]) == (order.pk, "COMPLETE")
        assert order_update["seq"] == OrderEvent.objects.get(order=order, kind="broker_postback").seq
        assert (position_update["type"], position_update["seq"]) == ("position_update", order_update["seq"] + 1)
        assert (funds_update["type"], funds_update["seq"]) == ("funds_update", order_update["seq"] + 2)

    def test_the_socket_shows_an_order_as_the_orders_api_does(self, alice):
        from accounts import presenters
        from accounts.api.serializers import OrderOutputSerializer
        from accounts.models import Order

        client = client_for(alice)
        order_id = place(client, order_type="LIMIT", price="1400.05").json()["id"]
        order = Order.objects.get(pk=order_id)

        assert presenters.order_data(order) == dict(OrderOutputSerializer(order).data)
        assert client.get(f"/api/accounts/primary/orders/{order_id}").json() == presenters.order_data(order)
