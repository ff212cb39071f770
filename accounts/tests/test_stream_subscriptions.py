"""Account streams on the order WebSocket: who may follow which account, and the per-user socket cap."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from accounts.models import TradingAccount
from accounts.tests.conftest import place
from accounts.tests.test_consumers import connect, opened, primary_id, received, socket
from accounts.tests.test_streams import MESSAGES_PER_FILL, access_token, make_role
from conftest import client_for
from identity.models import User

pytestmark = pytest.mark.django_db(transaction=True)


class TestSubscriptions:
    def test_a_tenant_admin_follows_an_account_of_the_tenant(self, alice, bob):
        make_role(bob, User.Role.TENANT_ADMIN)
        alice_client = client_for(alice)
        account_id = primary_id(alice)

        async def scenario():
            communicator = await opened(f"/ws/orders?token={access_token(bob)}")
            await communicator.send_json_to({"action": "subscribe", "account_id": account_id})
            subscribed = await communicator.receive_json_from()
            await sync_to_async(place)(alice_client)
            heard = await received(communicator, MESSAGES_PER_FILL)
            await communicator.send_json_to({"action": "unsubscribe", "account_id": account_id})
            unsubscribed = await communicator.receive_json_from()
            await sync_to_async(place)(alice_client)
            assert await communicator.receive_nothing(timeout=0.3)
            await communicator.disconnect()
            return subscribed, heard, unsubscribed

        subscribed, heard, unsubscribed = async_to_sync(scenario)()

        assert subscribed == {"type": "subscribed", "account_id": account_id, "seq": 0}
        assert [m["seq"] for m in heard] == [1, 2, 3, 4]
        assert unsubscribed == {"type": "unsubscribed", "account_id": account_id}

    def test_a_tenant_admin_opens_a_tenant_account_by_path(self, alice, bob):
        make_role(bob, User.Role.TENANT_ADMIN)

        assert connect(f"/ws/orders/{primary_id(alice)}?token={access_token(bob)}") == (True, None)

    @pytest.mark.parametrize(
        ("intruder", "role"),
        [
            ("bob", User.Role.USER),
            ("charlie", User.Role.USER),
            ("charlie", User.Role.TENANT_ADMIN),
            ("charlie", User.Role.OPS),
        ],
    )
    def test_nobody_follows_an_account_they_may_not_see(self, request, alice, intruder, role):
        intruder = request.getfixturevalue(intruder)
        make_role(intruder, role)
        account_id = primary_id(alice)

        async def scenario():
            communicator = await opened(f"/ws/orders?token={access_token(intruder)}")
            await communicator.send_json_to({"action": "subscribe", "account_id": account_id})
            answer = await communicator.receive_json_from()
            await communicator.disconnect()
            return answer

        answer = async_to_sync(scenario)()

        assert (answer["type"], answer["code"], answer["account_id"]) == ("error", "not_found", account_id)
        assert connect(f"/ws/orders/{account_id}?token={access_token(intruder)}") == (False, 4404)

    @pytest.mark.parametrize("account_ref", [None, True, 0, -1, 2**63, 10**40, 1.5, {"id": 1}, [1], "", "x" * 21])
    def test_malformed_account_ids(self, alice, account_ref):
        async def scenario():
            communicator = await opened(f"/ws/orders?token={access_token(alice)}")
            await communicator.send_json_to({"action": "subscribe", "account_id": account_ref})
            answer = await communicator.receive_json_from()
            await communicator.send_json_to({"action": "unsubscribe", "account_id": account_ref})
            second = await communicator.receive_json_from()
            await communicator.disconnect()
            return answer["code"], second["code"]

        assert async_to_sync(scenario)() == ("invalid_account_id", "not_subscribed")

    def test_subscribing_twice_is_one_subscription(self, alice):
        client = client_for(alice)
        account_id = primary_id(alice)

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={access_token(alice)}")
            await communicator.send_json_to({"action": "subscribe", "account_id": "primary"})
            again = await communicator.receive_json_from()
            await sync_to_async(place)(client)
            heard = await received(communicator, MESSAGES_PER_FILL)
            assert await communicator.receive_nothing(timeout=0.2)
            await communicator.disconnect()
            return again, heard

        again, heard = async_to_sync(scenario)()

        assert again == {"type": "subscribed", "account_id": account_id, "seq": 0}
        assert [m["seq"] for m in heard] == [1, 2, 3, 4]


class TestConnectionCap:
    def test_the_socket_over_the_cap_is_refused_with_4409(self, alice, settings):
        settings.THOR_WS_MAX_CONNECTIONS_PER_USER = 2
        path = f"/ws/orders/primary?token={access_token(alice)}"
        client = client_for(alice)

        async def scenario():
            first, second = await opened(path), await opened(path)
            counted = (await sync_to_async(client.get)("/api/ws/status")).json()["your_connections"]
            refused = socket(path)
            await refused.connect()
            closing = await refused.receive_output(timeout=1)
            await refused.disconnect(code=closing["code"])
            await first.disconnect()
            third = await opened(path)
            await second.disconnect()
            await third.disconnect()
            return counted, closing

        counted, closing = async_to_sync(scenario)()

        assert counted == 2
        assert closing == {"type": "websocket.close", "code": 4409}
        assert client.get("/api/ws/status").json()["your_connections"] == 0

    def test_a_tenant_admin_sees_the_tenants_sockets_by_kind(self, alice, bob, charlie):
        make_role(bob, User.Role.TENANT_ADMIN)
        bob_client = client_for(bob)

        async def scenario():
            sockets = [
                await opened(f"/ws/orders/primary?token={access_token(alice)}"),
                await opened(f"/ws/orders?token={access_token(alice)}"),
                await opened(f"/ws/orders?token={access_token(charlie)}"),
            ]
            body = (await sync_to_async(bob_client.get)("/api/ws/status")).json()
            for communicator in sockets:
                await communicator.disconnect()
            return body

        body = async_to_sync(scenario)()

        assert body["connections"] == {"account": 1, "all": 1}
        assert body["your_connections"] == 0

    def test_a_second_account_of_the_user_is_followed_by_the_all_accounts_socket(self, alice):
        TradingAccount.objects.create(user=alice, mode=TradingAccount.Mode.PAPER, currency="USD")

        async def scenario():
            communicator = await opened(f"/ws/orders?token={access_token(alice)}", following=2)
            await communicator.disconnect()

        async_to_sync(scenario)()
