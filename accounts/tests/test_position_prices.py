"""Real-time P&L over the real ASGI stack: the order socket (Thor's websocket application, the channel layer
on Redis under `make test`) hears ticks as the market stream sends them (`MarketStream._on_ticks`, the
callback KiteTicker calls: the last-prices store, then the instrument's group), and shows a paper account's
positions and funds at the tick's price, as REST then shows them too."""

import threading
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from accounts.tests.conftest import place
from accounts.tests.test_consumers import access_token, opened, primary_id
from conftest import client_for
from market import caches
from market.tests.test_ticks import (  # noqa: F401 (fixtures: the sandbox's Kite and the stream's runner)
    STREAM_WAIT_SECONDS,
    clock,
    kite,
    market_data_connection,
    quoted_prices,
    sandbox,
    start_runner,
)
from market.ticks import MarketStream, StreamSession

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("instrument_master", "ticks_flushed")]

INFY, SBIN = 408065, 779521


@pytest.fixture
def stream() -> MarketStream:
    """The market stream's tick handling, fed by hand: its ticker never connects (nothing listens there)."""
    return MarketStream(StreamSession("api-key", "token", 0), root="ws://127.0.0.1:9/ws")


def tick(stream: MarketStream, *prices: tuple[int, str]) -> None:
    stream._on_ticks(None, [{"instrument_token": token, "last_price": float(price)} for token, price in prices])


def socket_path(user) -> str:
    return f"/ws/orders/primary?token={access_token(user)}"


async def next_of_type(communicator, kind: str, timeout: float = 2) -> dict:
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        if message["type"] == kind:
            return message


async def drained(communicator) -> list[dict]:
    """What the socket has sent so far (the fill's stream messages, after `subscribed`)."""
    messages = []
    while not await communicator.receive_nothing(timeout=0.2):
        messages.append(await communicator.receive_json_from())
    return messages


def test_a_tick_for_a_held_instrument_reaches_the_socket_with_the_positions_pnl_and_the_funds(alice, stream):
    alice_path = socket_path(alice)
    alice_client = client_for(alice)
    assert place(alice_client, quantity=10).status_code == 201  # 10 INFY at 1500.00
    # A short: what it ties up (buying back at the mark, plus margin) moves with the tick as well.
    assert (
        place(alice_client, quantity=5, tradingsymbol="SBIN", transaction_type="SELL", product="MIS").status_code == 201
    )

    async def scenario():
        alices = await opened(alice_path)
        await sync_to_async(tick)(stream, (INFY, "1510.55"))
        first = await next_of_type(alices, "position_prices")
        await sync_to_async(tick)(stream, (SBIN, "790"))
        second = await next_of_type(alices, "position_prices")
        await alices.disconnect()
        return first, second

    first, second = async_to_sync(scenario)()

    assert "seq" not in first  # state, not an event: the stream's numbering is untouched
    assert first["account_id"] == primary_id(alice)
    (infy,) = first["data"]["positions"]  # only what moved
    assert (infy["tradingsymbol"], infy["last_price"]) == ("INFY", "1510.5500")
    assert (infy["unrealised_pnl"], infy["value"]) == ("105.50", "15105.50")
    (sbin,) = second["data"]["positions"]
    assert (sbin["quantity"], sbin["last_price"], sbin["unrealised_pnl"]) == (-5, "790.0000", "50.00")
    # REST shows the same prices, from the same store: the positions and the funds alike.
    rest_positions = alice_client.get("/api/accounts/primary/positions").json()["data"]
    assert sorted(rest_positions, key=lambda position: position["tradingsymbol"]) == [infy, sbin]
    assert alice_client.get("/api/accounts/primary/funds").json()["data"] == second["data"]["funds"]
    assert Decimal(second["data"]["funds"]["net_liquidation"]) == Decimal("100000.00") + Decimal("155.50")


def test_ticks_within_a_period_are_coalesced_into_one_message_at_the_latest_price(alice, stream, settings):
    alice_path = socket_path(alice)
    settings.THOR_WS_PRICE_UPDATES_PER_SECOND = 4
    assert place(client_for(alice), quantity=10).status_code == 201

    async def scenario():
        alices = await opened(alice_path)
        await drained(alices)
        for cents in range(1, 11):
            await sync_to_async(tick)(stream, (INFY, f"1500.{cents:02d}"))
        messages = [await next_of_type(alices, "position_prices")]
        while messages[-1]["data"]["positions"][0]["last_price"] != "1500.1000":
            messages.append(await next_of_type(alices, "position_prices", timeout=1))
        assert await alices.receive_nothing(timeout=0.3)
        await alices.disconnect()
        return messages

    messages = async_to_sync(scenario)()

    # The first tick goes at once; the other nine within its period wait for its end and go as one.
    assert 1 <= len(messages) <= 2


def test_a_position_opened_while_the_socket_is_open_gets_its_prices(alice, stream):
    alice_path = socket_path(alice)
    alice_client = client_for(alice)

    async def scenario():
        alices = await opened(alice_path)
        await sync_to_async(tick)(stream, (INFY, "1505"))
        assert await alices.receive_nothing(timeout=0.2)  # nothing held yet
        assert (await sync_to_async(place)(alice_client, quantity=2)).status_code == 201
        await next_of_type(alices, "funds_update")  # the fill's messages: the book is read again after them
        await sync_to_async(tick)(stream, (INFY, "1506"))
        message = await next_of_type(alices, "position_prices")
        await alices.disconnect()
        return message

    message = async_to_sync(scenario)()

    # Filled at the fixed price 1500.00, valued at the tick's.
    assert message["data"]["positions"][0]["unrealised_pnl"] == "12.00"


def test_watch_and_unwatch_an_instrument_not_held(bob, stream):
    bob_path = socket_path(bob)
    tick(stream, (SBIN, "799.95"))  # heard before the watch

    async def scenario():
        bobs = await opened(bob_path)
        await bobs.send_json_to({"action": "watch", "instruments": ["NSE:INFY", "NSE:SBIN", "NSE:INFY"]})
        watching = await bobs.receive_json_from(timeout=2)
        already = await next_of_type(bobs, "ticks")
        watched_tokens = await sync_to_async(caches.watched_tokens)()
        await sync_to_async(tick)(stream, (INFY, "1501.5"), (SBIN, "801"))
        first = await next_of_type(bobs, "ticks")
        await bobs.send_json_to({"action": "unwatch", "instruments": ["NSE:INFY"]})
        unwatched = await bobs.receive_json_from(timeout=2)
        await sync_to_async(tick)(stream, (INFY, "1502"), (SBIN, "802"))
        second = await next_of_type(bobs, "ticks")
        await bobs.disconnect()
        return watching, already, watched_tokens, first, unwatched, second

    watching, already, watched_tokens, first, unwatched, second = async_to_sync(scenario)()

    assert watching == {"type": "watching", "instruments": ["NSE:INFY", "NSE:SBIN"]}
    # The price already heard comes at once, without waiting for the next tick.
    assert [(item["instrument"], item["last_price"]) for item in already["data"]] == [("NSE:SBIN", "799.9500")]
    assert watched_tokens == {INFY, SBIN}  # the market stream subscribes them
    prices = {(item["instrument"], item["instrument_token"], item["last_price"]) for item in first["data"]}
    # Both within one period, or the first alone (then SBIN's comes next): the first message has INFY's.
    assert ("NSE:INFY", INFY, "1501.5000") in prices
    assert unwatched == {"type": "watching", "instruments": ["NSE:SBIN"]}
    assert all(item["instrument"] == "NSE:SBIN" for item in second["data"])


HOSTILE_INSTRUMENTS = [
    None,
    "NSE:INFY",
    [],
    [1],
    [True],
    [["NSE:INFY"]],
    [{"exchange": "NSE"}],
    ["INFY"],
    ["nse:INFY"],
    ["NSE:"],
    ["NSE:INFY\u0000"],
    ["NSE:INFY\n"],
    ["NSE:" + "A" * 65],
    ["NSE:INFY'; DROP TABLE"],
    ["NSE:../../etc"],
    ["NSE:I"] * 51,
]


def test_bad_and_hostile_watches_are_refused_whole_and_the_socket_stays_open(bob, settings):
    bob_path = socket_path(bob)

    async def scenario():
        bobs = await opened(bob_path)
        answers = []
        for instruments in HOSTILE_INSTRUMENTS:
            await bobs.send_json_to({"action": "watch", "instruments": instruments})
            answers.append(await bobs.receive_json_from(timeout=2))
        await bobs.send_json_to({"action": "unwatch", "instruments": "everything"})
        answers.append(await bobs.receive_json_from(timeout=2))
        settings.THOR_WS_MAX_WATCHED = 2
        for instruments in (["NSE:INFY", "NSE:NOSUCH"], ["NSE:INFY", "NSE:SBIN"], ["NSE:RELIANCE"]):
            await bobs.send_json_to({"action": "watch", "instruments": instruments})
            answers.append(await bobs.receive_json_from(timeout=2))
        await bobs.send_json_to({"action": "ping"})
        answers.append(await bobs.receive_json_from(timeout=2))
        await bobs.disconnect()
        return answers

    *malformed, unknown, watching, too_many, pong = async_to_sync(scenario)()

    assert [answer["code"] for answer in malformed] == ["invalid_instruments"] * (len(HOSTILE_INSTRUMENTS) + 1)
    # Every listed and streamed, or nothing watched; the answer names the ones that are not.
    assert (unknown["code"], unknown["instruments"]) == ("unknown_instruments", ["NSE:NOSUCH"])
    assert watching == {"type": "watching", "instruments": ["NSE:INFY", "NSE:SBIN"]}
    assert too_many["code"] == "too_many_instruments"
    assert pong == {"type": "pong"}
    assert caches.watched_tokens() == {INFY, SBIN}


def test_another_users_socket_never_gets_this_accounts_pnl(alice, bob, charlie, stream):
    alice_path = socket_path(alice)
    bob_path = f"/ws/orders?token={access_token(bob)}"  # every account of his
    charlie_path = socket_path(charlie)
    assert place(client_for(alice), quantity=10).status_code == 201

    async def scenario():
        alices = await opened(alice_path)
        bobs = await opened(bob_path)
        charlies = await opened(charlie_path)
        await bobs.send_json_to({"action": "watch", "instruments": ["NSE:INFY"]})  # the same instrument
        await bobs.receive_json_from(timeout=2)
        await sync_to_async(tick)(stream, (INFY, "1520"))
        alice_gets = await next_of_type(alices, "position_prices")
        bob_gets = await drained(bobs)
        assert await charlies.receive_nothing(timeout=0.1)
        for communicator in (alices, bobs, charlies):
            await communicator.disconnect()
        return alice_gets, bob_gets

    alice_gets, bob_gets = async_to_sync(scenario)()

    assert alice_gets["account_id"] == primary_id(alice)
    assert [message["type"] for message in bob_gets] == ["ticks"]
    assert "pnl" not in str(bob_gets) and "funds" not in str(bob_gets)


def test_in_the_embedded_mode_a_tick_from_the_streams_thread_reaches_the_socket(alice, stream, settings):
    alice_path = socket_path(alice)
    """`make run`: no Redis, the stream on a thread of the server's process, the layer in memory."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert place(client_for(alice), quantity=10).status_code == 201

    async def scenario():
        alices = await opened(alice_path)
        thread = threading.Thread(target=tick, args=(stream, (INFY, "1512")))
        thread.start()
        message = await next_of_type(alices, "position_prices")
        await sync_to_async(thread.join)()
        await alices.disconnect()
        return message

    message = async_to_sync(scenario)()

    assert message["data"]["positions"][0]["last_price"] == "1512.0000"
    assert caches.watched_tokens() == {INFY}  # the stream was asked for what the account holds


@pytest.mark.e2e
def test_end_to_end_the_sandboxs_ticks_through_kiteticker_move_the_sockets_pnl(
    alice,
    sandbox,  # noqa: F811 (the fixtures imported above)
    kite,  # noqa: F811
    clock,  # noqa: F811
    market_data_connection,  # noqa: F811
    start_runner,  # noqa: F811
):
    """The whole chain: the socket asks for what the account holds, the market stream (the official KiteTicker,
    against the sandbox's Kite WebSocket) subscribes it, and the sandbox's ticks reach the socket as P&L."""
    alice_path = socket_path(alice)
    assert place(client_for(alice), quantity=10).status_code == 201  # 10 INFY at the fixed 1500.00
    start_runner()

    async def scenario():
        alices = await opened(alice_path)
        first = await next_of_type(alices, "position_prices", timeout=STREAM_WAIT_SECONDS)
        await sync_to_async(clock.advance)(11)  # the sandbox's prices move
        moved = await sync_to_async(quoted_prices)(kite, [INFY])
        while True:
            later = await next_of_type(alices, "position_prices", timeout=STREAM_WAIT_SECONDS)
            if Decimal(later["data"]["positions"][0]["last_price"]) == moved[INFY]:
                break
        await alices.disconnect()
        return first, later, moved

    first, later, moved = async_to_sync(scenario)()

    position = later["data"]["positions"][0]
    assert Decimal(position["unrealised_pnl"]) == (moved[INFY] - Decimal("1500")) * 10
    assert first["data"]["positions"][0]["last_price"] != position["last_price"]


def test_a_book_that_cannot_be_read_or_a_stream_that_cannot_be_asked_leaves_the_socket_and_its_orders(
    alice, monkeypatch
):
    alice_path = socket_path(alice)
    alice_client = client_for(alice)

    def broken(*args, **kwargs):
        raise RuntimeError("the quote service is down")

    monkeypatch.setattr("accounts.pnl.selectors.paper_valuation", broken)
    monkeypatch.setattr("accounts.ticks.ticks_watch", broken)

    async def scenario():
        alices = await opened(alice_path)
        assert (await sync_to_async(place)(alice_client)).status_code == 201
        kinds = [message["type"] for message in await drained(alices)]
        await alices.send_json_to({"action": "watch", "instruments": ["NSE:INFY"]})
        watching = await alices.receive_json_from(timeout=2)
        await alices.disconnect()
        return kinds, watching

    kinds, watching = async_to_sync(scenario)()

    assert kinds == ["order_update", "order_update", "position_update", "funds_update"]
    assert watching == {"type": "watching", "instruments": ["NSE:INFY"]}
