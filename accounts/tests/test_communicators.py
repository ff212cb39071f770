"""The tests' communicator fails, naming where, when a cancelled consumer does not stop (it hung before)."""

import asyncio

import pytest
from asgiref.sync import async_to_sync

from accounts.tests import communicators
from accounts.tests.communicators import BoundedCommunicator


def stubborn_application(released: asyncio.Event):
    """An ASGI app that accepts, then outlives its cancel until `released` is set."""

    async def application(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            try:
                await released.wait()
                return
            except asyncio.CancelledError:
                continue  # the cancel swallowed: what a lost cancellation looks like from outside

    return application


def test_a_consumer_that_outlives_its_cancel_fails_the_test_with_its_stack(monkeypatch):
    monkeypatch.setattr(communicators, "STOP_SECONDS", 0.2)

    async def scenario():
        released = asyncio.Event()
        communicator = BoundedCommunicator(stubborn_application(released), "/ws/")
        assert (await communicator.connect())[0]
        try:
            with pytest.raises(AssertionError) as failure:
                await communicator.receive_output(timeout=0.05)
        finally:
            released.set()
        await asyncio.wait({communicator.future}, timeout=1)
        return str(failure.value)

    message = async_to_sync(scenario)()
    assert "did not stop within 0.2 s" in message
    assert "in application" in message  # the stuck coroutine, by name


def test_a_consumer_that_stops_on_its_cancel_times_out_as_before(monkeypatch):
    async def application(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()

    async def scenario():
        communicator = BoundedCommunicator(application, "/ws/")
        assert (await communicator.connect())[0]
        with pytest.raises(TimeoutError):
            await communicator.receive_output(timeout=0.05)
        return communicator.future.cancelled()

    assert async_to_sync(scenario)()
