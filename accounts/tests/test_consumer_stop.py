"""A closed socket's consumer stops, its channel layer's receive with it, even when that receive loses the cancel
that ends it.

Python 3.11's asyncio.wait_for, under which redis-py writes every command, can drop a cancel that lands as the
write completes; channels-redis's receive then blocks again and loops on a channel no one sends to, and
channels waits for it: in a server, the closed socket's consumer never ends (a test's communicator cancels it
a second time, which hides that). The layer's receive here loses the first cancel it gets, as that race
does, and then behaves as channels-redis does (thor.channel_receive)."""

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer

from accounts.tests.test_consumers import access_token, opened

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receive_losing_its_first_cancel(monkeypatch):
    lost = []
    real_receive = RedisChannelLayer.receive

    async def receive(self, channel):
        while True:
            try:
                return await real_receive(self, channel)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost.append(channel)  # swallowed: the receive goes on as if nothing had happened

    monkeypatch.setattr(RedisChannelLayer, "receive", receive)
    return lost


receive_qualname = "receive_losing_its_first_cancel.<locals>.receive"


def test_a_closed_sockets_consumer_stops_though_its_receive_lost_the_cancel(alice, receive_losing_its_first_cancel):
    path = f"/ws/orders/primary?token={access_token(alice)}"

    async def scenario():
        communicator = await opened(path)
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        # As a server waits: no second cancel from outside. The consumer must end on its own.
        done, _ = await asyncio.wait({communicator.future}, timeout=3)
        receiving = [task for task in asyncio.all_tasks() if task.get_coro().__qualname__ == receive_qualname]
        return bool(done), receiving

    ended, receiving = async_to_sync(scenario)()
    assert receive_losing_its_first_cancel  # the cancel was lost once
    assert ended
    assert receiving == []  # and nothing is left blocking on the closed socket's channel
