"""Real-time P&L of a live Kite account over the real ASGI stack: the order socket moves the positions the last
REST read stored (the broker sandbox over real HTTP) at each tick, without calling the broker, with no funds;
REST keeps answering the broker's snapshot."""

import asyncio
import dataclasses
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.cache import cache

from accounts import caches as account_caches
from accounts.tests import test_live_accounts, test_position_prices
from accounts.tests.conftest import place
from accounts.tests.test_consumers import access_token, opened
from accounts.tests.test_live_accounts import resting_limit, url
from accounts.tests.test_position_prices import drained, next_of_type, tick
from brokers.sandbox.kite_ledger import add_fill_to_position, find_or_open_position
from brokers.tests.sandbox_fixtures import sandbox_calls
from thor import snapshots

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("instrument_master", "ticks_flushed"),
    pytest.mark.e2e,
]

live = test_live_accounts.live
trading = test_live_accounts.trading
stream = test_position_prices.stream

INFY = 408065
POSITIONS_CALL = "GET /portfolio/positions"


@pytest.fixture
def holds_infy(sandbox, live):
    """AB1234 at the sandbox holds 10 INFY bought at 1400 and nothing else; INFY is pinned at 1500 (`live`)."""
    positions = sandbox.state.kite.accounts["AB1234"].positions
    position = find_or_open_position(
        [], {"exchange": "NSE", "tradingsymbol": "INFY", "product": "CNC", "instrument_token": INFY}, multiplier=1
    )
    add_fill_to_position(position, 10, 1400.0)
    positions["net"], positions["day"] = [position], []
    return live


def live_socket_path(user, account) -> str:
    return f"/ws/orders/{account.pk}?token={access_token(user)}"


def test_a_tick_moves_the_positions_the_last_rest_read_stored_with_no_funds(
    alice, alice_client, sandbox, holds_infy, stream
):
    before = alice_client.get(url(holds_infy, "/positions")).json()
    path = live_socket_path(alice, holds_infy)
    calls_before = sandbox_calls(sandbox, POSITIONS_CALL)

    async def scenario():
        sockets = await opened(path)
        await sync_to_async(tick)(stream, (INFY, "1510.55"))
        message = await next_of_type(sockets, "position_prices")
        await sockets.disconnect()
        return message

    message = async_to_sync(scenario)()

    (rest,) = before["data"]
    assert (rest["last_price"], rest["unrealised_pnl"], rest["realised_pnl"]) == ("1500.0000", "1000.00", "0.00")
    assert message["account_id"] == holds_infy.pk and "seq" not in message
    assert message["data"]["funds"] is None  # the broker's margins are not recomputed from ticks
    (moved,) = message["data"]["positions"]
    # The broker's numbers moved by (1510.55 - 1500) x 10: the same shape REST shows, realised untouched.
    assert moved == {
        **rest,
        "last_price": "1510.5500",
        "unrealised_pnl": "1105.50",
        "day_pnl": "1105.50",
        "value": "15105.50",
    }
    # The socket never called the broker; REST still answers the broker's snapshot, not the tick's price.
    assert sandbox_calls(sandbox, POSITIONS_CALL) == calls_before
    after = alice_client.get(url(holds_infy, "/positions")).json()
    assert after["data"] == before["data"]


def test_without_a_snapshot_nothing_is_sent_and_the_socket_goes_on(alice, sandbox, holds_infy, stream):
    path = live_socket_path(alice, holds_infy)

    async def scenario():
        sockets = await opened(path)
        await sync_to_async(tick)(stream, (INFY, "1510.55"))
        quiet = await sockets.receive_nothing(timeout=0.3)
        await sockets.send_json_to({"action": "ping"})
        pong = await sockets.receive_json_from(timeout=2)
        await sockets.disconnect()
        return quiet, pong

    quiet, pong = async_to_sync(scenario)()

    assert quiet and pong == {"type": "pong"}
    assert sandbox_calls(sandbox, POSITIONS_CALL) == 0  # no read was made: the socket made none either


def test_a_read_that_finds_no_snapshot_keeps_the_positions_it_had(
    alice, alice_client, sandbox, holds_infy, trading, stream
):
    alice_client.get(url(holds_infy, "/positions"))
    path = live_socket_path(alice, holds_infy)
    key = account_caches.live_snapshot_key(holds_infy, "positions")

    async def scenario():
        sockets = await opened(path)
        # The snapshot gone, its last-good copy too (as when it outlives THOR_LIVE_STALE_SECONDS).
        await sync_to_async(cache.delete_many)([*snapshots.forgotten_names(key), f"{key}:last-good"])
        # An order: the account's stream messages make the book read again; it finds no snapshot.
        response = await sync_to_async(place)(alice_client, account=trading.pk, **resting_limit())
        assert response.status_code == 201
        kinds = [message["type"] for message in await drained(sockets)]
        await sync_to_async(tick)(stream, (INFY, "1490"))
        message = await next_of_type(sockets, "position_prices")
        await sockets.disconnect()
        return kinds, message

    kinds, message = async_to_sync(scenario)()

    assert "order_update" in kinds
    assert snapshots.peek(key) is None
    (moved,) = message["data"]["positions"]
    assert (moved["last_price"], moved["unrealised_pnl"]) == ("1490.0000", "900.00")


def test_another_users_socket_never_gets_this_accounts_prices(alice, alice_client, bob, holds_infy, stream):
    alice_client.get(url(holds_infy, "/positions"))
    alice_path = live_socket_path(alice, holds_infy)
    bob_path = f"/ws/orders?token={access_token(bob)}"  # every account of his

    async def scenario():
        alices = await opened(alice_path)
        bobs = await opened(bob_path)
        await bobs.send_json_to({"action": "watch", "instruments": ["NSE:INFY"]})  # the same instrument
        await bobs.receive_json_from(timeout=2)
        await sync_to_async(tick)(stream, (INFY, "1520"))
        alice_gets = await next_of_type(alices, "position_prices")
        bob_gets = await drained(bobs)
        await alices.disconnect()
        await bobs.disconnect()
        return alice_gets, bob_gets

    alice_gets, bob_gets = async_to_sync(scenario)()

    assert alice_gets["account_id"] == holds_infy.pk
    assert [message["type"] for message in bob_gets] == ["ticks"]
    assert str(holds_infy.pk) not in str([message.get("account_id") for message in bob_gets])


def test_hostile_snapshot_content_does_not_break_the_socket(alice, alice_client, holds_infy, stream):
    alice_client.get(url(holds_infy, "/positions"))
    key = account_caches.live_snapshot_key(holds_infy, "positions")
    (infy,) = snapshots.peek(key).data

    def hostile(**overrides):
        return dataclasses.replace(infy, **{"raw": {}, **overrides})

    stored = [
        infy,
        hostile(symbol="NOSUCH", instrument_token=None),  # no token, none in the master
        hostile(symbol="CLOSED", instrument_token=111, quantity=Decimal("0")),
        hostile(symbol="NOAVERAGE", instrument_token=222, average_price=None),
        hostile(symbol="NAN", instrument_token=333, last_price=Decimal("NaN")),
        hostile(symbol="LOTS", instrument_token=444, raw={"multiplier": "many"}),
        {"tradingsymbol": "INFY"},
        None,
    ]
    snapshots.read_through(key, lambda: stored, force=True)
    path = live_socket_path(alice, holds_infy)

    async def scenario():
        sockets = await opened(path)
        await sync_to_async(tick)(stream, (INFY, "1501"), (111, "5"), (222, "1600"), (333, "7"), (444, "9"))
        first = await next_of_type(sockets, "position_prices")
        messages = [first, *await drained(sockets)]
        await sockets.send_json_to({"action": "ping"})
        pong = await sockets.receive_json_from(timeout=2)
        await sockets.disconnect()
        return messages, pong

    messages, pong = async_to_sync(scenario)()

    shown = {
        position["tradingsymbol"]: position
        for message in messages
        if message["type"] == "position_prices"
        for position in message["data"]["positions"]
    }
    assert sorted(shown) == ["INFY", "NOAVERAGE"]
    assert shown["INFY"]["unrealised_pnl"] == "1010.00"
    assert (shown["NOAVERAGE"]["average_price"], shown["NOAVERAGE"]["unrealised_pnl"]) == (None, "2000.00")
    assert pong == {"type": "pong"}


def test_positions_a_rest_read_stores_anew_reach_the_open_socket_at_the_next_tick(
    alice, alice_client, sandbox, holds_infy, stream
):
    alice_client.get(url(holds_infy, "/positions"))  # 10 INFY stored
    path = live_socket_path(alice, holds_infy)
    key = account_caches.live_snapshot_key(holds_infy, "positions")

    def bought_outside_thor():
        """10 more INFY at 1450 at the broker (the trader's own app), and the fresh period over: the next REST
        read asks the broker."""
        (position,) = sandbox.state.kite.accounts["AB1234"].positions["net"]
        add_fill_to_position(position, 10, 1450.0)
        cache.delete_many(snapshots.forgotten_names(key))
        return alice_client.get(url(holds_infy, "/positions")).json()

    async def scenario():
        sockets = await opened(path)
        rest = await sync_to_async(bought_outside_thor)()
        # The socket's book reads the new snapshot on its own (no order, no renewal): within a few ticks.
        for cents in range(1, 31):
            await sync_to_async(tick)(stream, (INFY, f"1510.{cents:02d}"))
            (moved,) = (await next_of_type(sockets, "position_prices"))["data"]["positions"]
            if moved["quantity"] == 20:
                break
            await asyncio.sleep(0.1)
        await sockets.disconnect()
        return rest, moved, cents

    rest, moved, cents = async_to_sync(scenario)()

    assert [position["quantity"] for position in rest["data"]] == [20]
    assert moved["quantity"] == 20, moved
    assert moved["last_price"] == f"1510.{cents:02d}00"
