"""The order socket on the tick hub (market.tickhub): registered for what it needs while open, forgotten when
it closes; a batch of ticks reaches it whole, at once, and the batches of a throttle period as one message."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from accounts.tests.conftest import place
from accounts.tests.test_consumers import opened
from accounts.tests.test_position_prices import drained, next_of_type, socket_path, stream, tick  # noqa: F401
from conftest import client_for
from market.tickhub import tick_hub

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("instrument_master", "ticks_flushed")]

INFY, SBIN = 408065, 779521


def test_a_socket_registers_what_it_holds_and_watches_and_is_forgotten_when_it_closes(alice, bob):
    assert place(client_for(alice), quantity=10).status_code == 201
    alice_path, bob_path = socket_path(alice), socket_path(bob)

    async def scenario():
        hub = tick_hub()
        alices = await opened(alice_path)
        bobs = await opened(bob_path)
        await drained(alices)
        held = hub.registered()
        await bobs.send_json_to({"action": "watch", "instruments": ["NSE:INFY", "NSE:SBIN"]})
        await next_of_type(bobs, "watching")
        both = hub.registered()
        await bobs.send_json_to({"action": "unwatch", "instruments": ["NSE:SBIN"]})
        await next_of_type(bobs, "watching")
        unwatched = hub.registered()
        await bobs.disconnect()
        bob_gone = hub.registered()
        await alices.disconnect()
        return held, both, unwatched, bob_gone, hub.registered()

    held, both, unwatched, bob_gone, after = async_to_sync(scenario)()

    assert held == {INFY: 1}
    assert both == {INFY: 2, SBIN: 1}
    assert unwatched == {INFY: 2}
    assert bob_gone == {INFY: 1}
    assert after == {}


def test_a_batch_goes_whole_at_once_and_the_batches_of_a_period_go_as_one_message(
    alice,
    stream,  # noqa: F811 (the fixture imported above)
    settings,
):
    settings.THOR_WS_PRICE_UPDATES_PER_SECOND = 2
    alice_client = client_for(alice)
    assert place(alice_client, quantity=10).status_code == 201
    assert place(alice_client, quantity=5, tradingsymbol="SBIN").status_code == 201
    alice_path = socket_path(alice)

    def two_batches() -> None:
        tick(stream, (INFY, "1501"), (SBIN, "801"))
        tick(stream, (INFY, "1502"))

    async def scenario():
        alices = await opened(alice_path)
        await drained(alices)
        await sync_to_async(tick)(stream, (INFY, "1500.50"), (SBIN, "800.50"))
        first = await next_of_type(alices, "position_prices")
        await sync_to_async(two_batches)()  # within the period the first one opened
        second = await next_of_type(alices, "position_prices", timeout=2)
        quiet = await alices.receive_nothing(timeout=0.6)
        await alices.disconnect()
        return first, second, quiet

    first, second, quiet = async_to_sync(scenario)()

    prices = lambda message: {p["tradingsymbol"]: p["last_price"] for p in message["data"]["positions"]}  # noqa: E731
    assert prices(first) == {"INFY": "1500.5000", "SBIN": "800.5000"}  # the whole batch, in one message
    assert prices(second) == {"INFY": "1502.0000", "SBIN": "801.0000"}  # both batches, the latest prices
    assert quiet
