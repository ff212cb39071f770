"""Account streams on the order WebSocket: tickets, subscriptions, sequence numbers, resync and gap
repair, the per-user socket cap.

As in test_consumers: real channel layer (Redis under `make test`), transactional tests, each socket
scenario one coroutine run by async_to_sync.
"""

from datetime import timedelta

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings as django_settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import AccountStream, OrderEvent
from accounts.streams import ADVANCE_SQL, account_group, event_with_seq_create, stream_seq_advance
from accounts.tests.conftest import order_body, place
from accounts.tests.test_consumers import connect, opened, primary_id, received, socket
from conftest import client_for
from identity.tokens import token_pair_for

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES_PER_FILL = 4  # placed, filled, positions, funds


def access_token(user) -> str:
    # Made without the database (unlike a login's token pair), so scenarios can make it inside their loop.
    return str(AccessToken.for_user(user))


def ticket_for(user, client=None) -> str:
    response = (client or client_for(user)).post("/api/ws/ticket")
    assert response.status_code == 201, response.json()
    assert response.json()["expires_in"] == django_settings.THOR_WS_TICKET_SECONDS
    return response.json()["ticket"]


def make_role(user, role) -> None:
    user.role = role
    user.save()


class TestTickets:
    def test_needs_a_sign_in(self, anon_client):
        response = anon_client.post("/api/ws/ticket")

        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"

    def test_a_ticket_the_cache_cannot_store_is_a_503_not_a_dead_ticket(self, alice, redis_down, caplog):
        client = client_for(alice)

        responses = [client.post("/api/ws/ticket") for _ in range(3)]

        assert [response.status_code for response in responses] == [503] * 3
        assert responses[0].json() == {
            "detail": "Socket sign-in is unavailable right now; try again shortly, or connect with the access token.",
            "status_code": 503,
            "code": "service_unavailable",
        }
        assert caplog.text.count("WebSocket tickets cannot be stored") <= 1

    def test_a_ticket_opens_one_socket_once(self, alice):
        ticket = ticket_for(alice)

        assert connect(f"/ws/orders/primary?ticket={ticket}") == (True, None)
        assert connect(f"/ws/orders/primary?ticket={ticket}") == (False, 4401)

    def test_a_ticket_as_subprotocol_pair_opens_one_socket_once_and_echoes_ticket(self, alice):
        ticket = ticket_for(alice)

        assert connect("/ws/orders/primary", subprotocols=["ticket", ticket]) == (True, "ticket")
        assert connect("/ws/orders/primary", subprotocols=["ticket", ticket]) == (False, 4401)

    @pytest.mark.parametrize("offered", [["ticket"], ["ticket", "not-a-ticket"], ["not-a-ticket", "ticket"]])
    def test_a_ticket_subprotocol_without_a_valid_ticket(self, alice, offered):
        ticket_for(alice)

        assert connect("/ws/orders/primary", subprotocols=offered) == (False, 4401)

    def test_a_ticket_expires(self, alice, settings, time_passes):
        settings.THOR_WS_TICKET_SECONDS = 1
        ticket = ticket_for(alice)
        time_passes(1.5)

        assert connect(f"/ws/orders/primary?ticket={ticket}") == (False, 4401)

    @pytest.mark.parametrize("ticket", ["", "not-a-ticket", "x" * 500, "%00", "ws-ticket:"])
    def test_made_up_tickets(self, alice, ticket):
        ticket_for(alice)

        assert connect(f"/ws/orders/primary?ticket={ticket}") == (False, 4401)

    def test_only_a_hash_of_the_ticket_is_stored(self, alice):
        ticket = ticket_for(alice)

        keys = [key.decode() for key in redis.Redis.from_url(django_settings.REDIS_URL).keys("*ws-ticket*")]
        assert keys and not any(ticket in key for key in keys)

    @pytest.mark.parametrize("intruder", ["bob", "charlie"])
    def test_a_ticket_opens_only_its_users_accounts(self, request, alice, intruder):
        ticket = ticket_for(request.getfixturevalue(intruder))

        assert connect(f"/ws/orders/{primary_id(alice)}?ticket={ticket}") == (False, 4404)

    def test_a_user_deactivated_after_the_ticket_was_issued(self, alice):
        ticket = ticket_for(alice)
        alice.is_active = False
        alice.save()

        assert connect(f"/ws/orders/primary?ticket={ticket}") == (False, 4401)

    def test_the_socket_ends_with_the_sign_in_the_ticket_was_bought_with(self, alice, anon_client):
        # Seconds enough for a busy machine to buy the ticket and connect before the token ends.
        token = AccessToken.for_user(alice)
        token.set_exp(lifetime=timedelta(seconds=4))
        anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        ticket = ticket_for(alice, client=anon_client)

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?ticket={ticket}")
            closing = await communicator.receive_output(timeout=8)
            await communicator.disconnect(code=closing["code"])
            return closing

        assert async_to_sync(scenario)() == {"type": "websocket.close", "code": 4401}


class TestLoggingOut:
    """A socket lives no longer than the session it was opened with: logging out closes it with 4401."""

    @pytest.mark.parametrize("sign_in", ["ticket", "token"])
    def test_the_sessions_sockets_close(self, alice, settings, sign_in):
        settings.THOR_WS_FOLLOW_SECONDS = 1  # the socket looks every third of it
        ended, other = token_pair_for(alice), token_pair_for(alice)
        client = client_for(alice)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {ended['access']}")
        credential = f"ticket={ticket_for(alice, client=client)}" if sign_in == "ticket" else f"token={ended['access']}"

        async def scenario():
            ending = await opened(f"/ws/orders/primary?{credential}")
            staying = await opened(f"/ws/orders/primary?token={other['access']}")
            logout = await sync_to_async(client.post)("/api/auth/logout/", {"refresh": ended["refresh"]}, format="json")
            closing = await ending.receive_output(timeout=5)
            await ending.disconnect(code=closing.get("code"))
            await staying.send_json_to({"action": "ping"})
            still_open = await staying.receive_json_from(timeout=2)
            await staying.disconnect()
            return logout.status_code, closing, still_open

        assert async_to_sync(scenario)() == (205, {"type": "websocket.close", "code": 4401}, {"type": "pong"})


class TestHeartbeat:
    def test_action_ping(self, alice):
        async def scenario():
            communicator = await opened(f"/ws/orders/primary?ticket={await sync_to_async(ticket_for)(alice)}")
            await communicator.send_json_to({"action": "ping"})
            answer = await communicator.receive_json_from()
            await communicator.disconnect()
            return answer

        assert async_to_sync(scenario)() == {"type": "pong"}


class TestSequence:
    def test_the_first_message_says_where_the_stream_is(self, alice):
        place(client_for(alice))

        async def scenario():
            communicator = socket(f"/ws/orders/primary?token={access_token(alice)}")
            await communicator.connect()
            subscribed = await communicator.receive_json_from()
            await communicator.disconnect()
            return subscribed

        subscribed = async_to_sync(scenario)()

        assert subscribed == {"type": "subscribed", "account_id": primary_id(alice), "seq": MESSAGES_PER_FILL}

    def test_each_event_row_keeps_the_numbers_of_its_messages(self, alice):
        place(client_for(alice))
        place(client_for(alice), order_type="LIMIT", price="1000")

        events = OrderEvent.objects.filter(account_id=primary_id(alice), order__isnull=False).order_by("seq")

        # Placed, filled (order, positions, funds); then the limit order placed and opened.
        assert [(event.seq, event.last_seq) for event in events] == [(1, 1), (2, 4), (5, 5), (6, 6)]
        assert AccountStream.objects.get(account_id=primary_id(alice)).last_seq == 6

    def test_a_rolled_back_change_takes_no_number(self, alice):
        client = client_for(alice)
        body = {"orders": [order_body(quantity=10), order_body(quantity=60)]}
        assert client.post("/api/accounts/primary/batch-orders", body, format="json").status_code == 400

        place(client)

        assert list(OrderEvent.objects.filter(order__isnull=False).values_list("seq", flat=True)) == [1, 2]

    def test_the_counter_lives_in_the_database_and_goes_on_from_there(self, alice):
        account_id = primary_id(alice)
        AccountStream.objects.create(account_id=account_id, last_seq=41)

        assert stream_seq_advance(account_id=account_id, count=3) == 44
        assert stream_seq_advance(account_id=account_id, count=1) == 45
        assert AccountStream._meta.db_table in ADVANCE_SQL

    def test_an_event_and_its_numbers_are_written_together(self, alice):
        account_id = primary_id(alice)
        AccountStream.objects.create(account_id=account_id, last_seq=9)
        before = AccountStream.objects.get(account_id=account_id).last_seq

        event = event_with_seq_create(
            count=3, account_id=account_id, order=None, actor=alice, kind="reset", before={"a": "é"}, after={}
        )

        stored = OrderEvent.objects.get(pk=event.pk)
        assert (stored.seq, stored.last_seq) == (event.seq, event.last_seq) == (before + 1, before + 3)
        assert (stored.kind, stored.actor_id, stored.before, stored.created_at) == (
            "reset",
            alice.pk,
            {"a": "é"},
            event.created_at,
        )
        assert AccountStream.objects.get(account_id=account_id).last_seq == before + 3


class TestResync:
    def test_after_a_reconnect_the_missed_messages_come_from_the_database(self, alice):
        client = client_for(alice)
        path = f"/ws/orders/primary?token={access_token(alice)}"
        account_id = primary_id(alice)

        async def scenario():
            live = await opened(path)
            await sync_to_async(place)(client)
            heard_live = await received(live, MESSAGES_PER_FILL)
            await live.disconnect()
            # A client that reconnects knows it saw up to 0 (it saw nothing, say).
            late = await opened(path)
            await late.send_json_to({"action": "resync", "account_id": account_id, "since_seq": 0})
            resent = await received(late, MESSAGES_PER_FILL + 1)
            await late.disconnect()
            return heard_live, resent

        heard_live, resent = async_to_sync(scenario)()

        *messages, done = resent
        assert done == {"type": "resynced", "account_id": account_id, "seq": MESSAGES_PER_FILL, "complete": True}
        # Each order update as it was at that step (not the order's state now), positions and funds as now.
        for resent_one, live_one in zip(messages[:2], heard_live[:2], strict=True):
            assert resent_one == live_one, (resent_one, live_one)
        assert [(m["type"], m["seq"], m["data"]) for m in messages] == [
            (m["type"], m["seq"], m["data"]) for m in heard_live
        ]

    def test_without_a_gap_only_the_confirmation(self, alice):
        client = client_for(alice)
        account_id = primary_id(alice)

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={access_token(alice)}")
            await sync_to_async(place)(client)
            await received(communicator, MESSAGES_PER_FILL)
            await communicator.send_json_to({"action": "resync", "account_id": account_id, "since_seq": 4})
            answer = await received(communicator, 1)
            assert await communicator.receive_nothing(timeout=0.2)
            await communicator.disconnect()
            return answer

        assert async_to_sync(scenario)() == [{"type": "resynced", "account_id": account_id, "seq": 4, "complete": True}]

    def test_resync_then_live_without_a_gap_or_a_duplicate(self, alice):
        client = client_for(alice)
        account_id = primary_id(alice)

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={access_token(alice)}")
            await sync_to_async(place)(client)
            first = await received(communicator, MESSAGES_PER_FILL)
            await communicator.send_json_to({"action": "resync", "account_id": account_id, "since_seq": 2})
            resent = await received(communicator, 3)
            await sync_to_async(place)(client)
            after = await received(communicator, MESSAGES_PER_FILL)
            assert await communicator.receive_nothing(timeout=0.2)
            await communicator.disconnect()
            return first, resent, after

        first, resent, after = async_to_sync(scenario)()

        assert [m["seq"] for m in first] == [1, 2, 3, 4]
        assert [m.get("seq") for m in resent] == [3, 4, 4] and resent[-1]["type"] == "resynced"
        assert [m["seq"] for m in after] == [5, 6, 7, 8]

    def test_since_a_time(self, alice):
        client = client_for(alice)
        account_id = primary_id(alice)
        place(client)
        between = timezone.now()
        place(client, tradingsymbol="SBIN")

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={access_token(alice)}")
            await communicator.send_json_to(
                {"action": "resync", "account_id": account_id, "since": between.isoformat()}
            )
            resent = await received(communicator, MESSAGES_PER_FILL + 1)
            await communicator.disconnect()
            return resent

        resent = async_to_sync(scenario)()

        assert [m["seq"] for m in resent] == [5, 6, 7, 8, 8]
        assert resent[0]["data"]["tradingsymbol"] == "SBIN"

    def test_a_long_way_behind_comes_in_pages(self, alice, settings):
        settings.THOR_WS_RESYNC_MAX_EVENTS = 1
        client = client_for(alice)
        account_id = primary_id(alice)
        place(client)

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={access_token(alice)}")
            await communicator.send_json_to({"action": "resync", "account_id": account_id, "since_seq": 0})
            first_page = await received(communicator, 2)
            await communicator.send_json_to({"action": "resync", "account_id": account_id, "since_seq": 1})
            second_page = await received(communicator, 4)
            await communicator.disconnect()
            return first_page, second_page

        first_page, second_page = async_to_sync(scenario)()

        assert [m.get("seq") for m in first_page] == [1, 1]
        assert first_page[-1] == {"type": "resynced", "account_id": account_id, "seq": 1, "complete": False}
        assert [m.get("seq") for m in second_page] == [2, 3, 4, 4] and second_page[-1]["complete"] is True

    @pytest.mark.parametrize(
        ("request_body", "code"),
        [
            ({"since_seq": -1}, "invalid_since_seq"),
            ({"since_seq": "3"}, "invalid_since_seq"),
            ({"since_seq": True}, "invalid_since_seq"),
            ({"since_seq": 1.5}, "invalid_since_seq"),
            ({"since_seq": 2**63}, "invalid_since_seq"),
            ({"since_seq": 10**40}, "invalid_since_seq"),
            ({"since": "2026-13-45T10:00:00Z"}, "invalid_since"),
            ({}, "invalid_since"),
            ({"since": "yesterday"}, "invalid_since"),
            ({"since": "2026-01-01T10:00:00"}, "invalid_since"),
            ({"since": 1700000000}, "invalid_since"),
            ({"since_seq": 0, "account_id": 999999}, "not_subscribed"),
            ({"since_seq": 0, "account_id": "primary"}, "not_subscribed"),
            ({"since_seq": 0, "account_id": None}, "not_subscribed"),
        ],
    )
    def test_bad_requests_get_an_error_and_the_socket_stays_open(self, alice, request_body, code):
        account_id = primary_id(alice)

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={access_token(alice)}")
            await communicator.send_json_to({"action": "resync", "account_id": account_id, **request_body})
            answer = await communicator.receive_json_from()
            await communicator.send_to(text_data="ping")
            still_open = await communicator.receive_json_from()
            await communicator.disconnect()
            return answer, still_open

        answer, still_open = async_to_sync(scenario)()

        assert (answer["type"], answer["code"], still_open) == ("error", code, {"type": "pong"})


class TestGapRepair:
    """The Redis channel layer drops messages for a socket over capacity without a word: here the socket
    is taken out of its account's group for one order, as a drop would, and must still deliver all."""

    def test_a_lost_message_is_sent_from_the_database_before_the_next_one(self, alice):
        client = client_for(alice)
        account_id = primary_id(alice)
        store = redis.Redis.from_url(django_settings.REDIS_URL)
        group_key = f"asgi:group:{account_group(account_id)}"

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={access_token(alice)}")
            members = store.zrange(group_key, 0, -1, withscores=True)
            assert len(members) == 1
            store.zrem(group_key, members[0][0])
            await sync_to_async(place)(client)
            assert await communicator.receive_nothing(timeout=0.3)
            store.zadd(group_key, dict(members))
            await sync_to_async(place)(client, tradingsymbol="SBIN")
            messages = await received(communicator, 2 * MESSAGES_PER_FILL + 1)
            assert await communicator.receive_nothing(timeout=0.2)
            await communicator.disconnect()
            return messages

        messages = async_to_sync(scenario)()

        stream = [m for m in messages if m["type"] != "resynced"]
        assert [m["seq"] for m in stream] == list(range(1, 2 * MESSAGES_PER_FILL + 1))
        assert [m["data"]["tradingsymbol"] for m in stream if m["type"] == "order_update"] == ["INFY"] * 2 + [
            "SBIN"
        ] * 2
