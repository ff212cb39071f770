"""One book per followed account in a server process (accounts.books): the sockets that follow an account share
its valuation, its reads and the encoded message, and a socket that leaves takes nothing from the others."""

import asyncio
import logging

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from accounts import books, pnl
from accounts.books import SharedBook
from accounts.tests.conftest import place
from accounts.tests.test_consumers import opened
from accounts.tests.test_position_prices import drained, next_of_type, socket_path, stream, tick  # noqa: F401
from conftest import client_for
from market.tickhub import tick_hub

INFY, SBIN = 408065, 779521


@pytest.fixture
def reads(monkeypatch):
    """Count the reads of each account's book (the real read still runs)."""
    counted: list[int] = []
    real = books.book_load

    def counting(account_id):
        counted.append(account_id)
        return real(account_id)

    monkeypatch.setattr(books, "book_load", counting)
    return counted


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("instrument_master", "ticks_flushed")
class TestSocketsOfOneAccount:
    def test_share_one_registration_one_read_and_the_same_message(self, alice, stream, reads):  # noqa: F811
        alice_client = client_for(alice)
        assert place(alice_client, quantity=10).status_code == 201
        path = socket_path(alice)

        async def scenario():
            sockets = [await opened(path) for _ in range(5)]
            for socket in sockets:
                await drained(socket)
            registered = tick_hub().registered()
            reads_on_open = len(reads)
            await sync_to_async(tick)(stream, (INFY, "1510.55"))
            messages = [await next_of_type(socket, "position_prices") for socket in sockets]
            # A fill: each socket hears the account's stream; the book is read once for all of them.
            assert (await sync_to_async(place)(alice_client, quantity=5, tradingsymbol="SBIN")).status_code == 201
            fill_messages = [await drained(socket) for socket in sockets]
            reads_after_fill = len(reads) - reads_on_open
            await sync_to_async(tick)(stream, (SBIN, "801"))
            after_fill = [await next_of_type(socket, "position_prices") for socket in sockets]
            for socket in sockets:
                await socket.disconnect()
            return (
                registered,
                reads_on_open,
                messages,
                fill_messages,
                reads_after_fill,
                after_fill,
                tick_hub().registered(),
            )

        registered, reads_on_open, messages, fill_messages, reads_after_fill, after_fill, after = async_to_sync(
            scenario
        )()

        assert registered == {INFY: 1}  # the book, not each socket
        assert reads_on_open == 1
        assert all(message == messages[0] for message in messages)
        assert messages[0]["data"]["positions"][0]["last_price"] == "1510.5500"
        # At most one read per change the stream announced (the fill's messages), however many sockets hear it.
        stream_messages = {message["seq"] for message in fill_messages[0] if "seq" in message}
        assert len(stream_messages) == 4
        assert 1 <= reads_after_fill <= len(stream_messages) < len(fill_messages)
        assert [message["data"]["positions"][0]["tradingsymbol"] for message in after_fill] == ["SBIN"] * 5
        assert after == {}

    def test_a_socket_that_leaves_takes_nothing_from_the_others(self, alice, stream):  # noqa: F811
        assert place(client_for(alice), quantity=10).status_code == 201
        path = socket_path(alice)

        async def scenario():
            staying, leaving = await opened(path), await opened(path)
            await drained(staying)
            await drained(leaving)
            await leaving.disconnect()
            await sync_to_async(tick)(stream, (INFY, "1499"))
            message = await next_of_type(staying, "position_prices")
            registered = tick_hub().registered()
            await staying.disconnect()
            return message, registered

        message, registered = async_to_sync(scenario)()

        assert message["data"]["positions"][0]["last_price"] == "1499.0000"
        assert registered == {INFY: 1}

    def test_another_users_socket_is_never_handed_a_book_it_does_not_follow(self, alice, bob, stream):  # noqa: F811
        assert place(client_for(alice), quantity=10).status_code == 201
        assert place(client_for(bob), quantity=3).status_code == 201
        alice_path, bob_path = socket_path(alice), socket_path(bob)

        async def scenario():
            alices, bobs = await opened(alice_path), await opened(bob_path)
            await drained(alices)
            await drained(bobs)
            await sync_to_async(tick)(stream, (INFY, "1505"))
            alice_message = await next_of_type(alices, "position_prices")
            bob_message = await next_of_type(bobs, "position_prices")
            bob_more = await bobs.receive_nothing(timeout=0.3)
            await alices.disconnect()
            await bobs.disconnect()
            return alice_message, bob_message, bob_more

        alice_message, bob_message, bob_more = async_to_sync(scenario)()

        assert alice_message["account_id"] != bob_message["account_id"]
        assert alice_message["data"]["positions"][0]["quantity"] == 10
        assert bob_message["data"]["positions"][0]["quantity"] == 3
        assert bob_more  # one message: its own account's


class TestReadsAreShared:
    """SharedBook.refresh on a read the test controls: which asks share a read and which need another."""

    @pytest.fixture
    def book(self, monkeypatch):
        gate = {"reads": 0, "open": None}

        def read(account_id):
            gate["reads"] += 1
            return None if account_id < 0 else pnl.Book.__new__(pnl.Book)

        async def gated(account_id):
            await gate["open"].wait()
            return read(account_id)

        monkeypatch.setattr(books, "database_sync_to_async", lambda function: gated)
        return gate

    # What a read is asked for by: a stream message's seq, or when a REST read stored a live account's positions.
    @pytest.mark.parametrize("by, first, later, older", [("seq", 5, 6, 4), ("stored_at", 100.5, 101.0, 99.0)])
    def test_asks_for_one_change_share_one_read_and_a_later_change_gets_its_own(self, book, by, first, later, older):
        async def scenario():
            book["open"] = asyncio.Event()
            shared = SharedBook(7)
            firsts = [asyncio.ensure_future(shared.refresh(**{by: first})) for _ in range(10)]
            await asyncio.sleep(0)
            the_later = asyncio.ensure_future(shared.refresh(**{by: later}))  # asked while the first read is under way
            await asyncio.sleep(0)
            book["open"].set()
            await asyncio.gather(*firsts, the_later)
            reads = book["reads"]
            await shared.refresh(**{by: later})  # already answered
            await shared.refresh(**{by: older})  # older than what was read
            return reads, book["reads"]

        assert asyncio.run(scenario()) == (2, 2)

    def test_a_renewal_reads_only_a_book_older_than_it_allows(self, book):
        async def scenario():
            book["open"] = asyncio.Event()
            book["open"].set()
            shared = SharedBook(7)
            await shared.first_read()
            await shared.refresh(max_age=60)
            fresh = book["reads"]
            shared.loaded_at -= 61
            await shared.refresh(max_age=60)
            return fresh, book["reads"]

        assert asyncio.run(scenario()) == (1, 2)

    def test_a_waiting_socket_cancelled_does_not_cancel_the_read_the_others_wait_for(self, book):
        async def scenario():
            book["open"] = asyncio.Event()
            shared = SharedBook(7)
            leaving = asyncio.ensure_future(shared.refresh(seq=1))
            staying = asyncio.ensure_future(shared.refresh(seq=1))
            await asyncio.sleep(0)
            leaving.cancel()
            await asyncio.sleep(0)
            book["open"].set()
            await staying
            return shared.read, book["reads"]

        assert asyncio.run(scenario()) == (1, 1)

    def test_a_book_that_cannot_be_read_answers_its_waiters_and_logs_no_secret(self, book, monkeypatch, caplog):
        async def broken(account_id):
            raise ConnectionError("redis://:hunter2@cache.internal:6379/0 refused")

        monkeypatch.setattr(books, "database_sync_to_async", lambda function: broken)

        async def scenario():
            shared = SharedBook(7)
            await asyncio.wait_for(shared.refresh(seq=1), timeout=2)
            return shared.read, shared.book

        with caplog.at_level(logging.WARNING, logger="accounts.books"):
            assert asyncio.run(scenario()) == (1, None)

        assert "ConnectionError" in caplog.text
        assert "hunter2" not in caplog.text and "cache.internal" not in caplog.text

    def test_an_account_that_is_gone_is_read_once_and_never_again(self, book):
        async def scenario():
            book["open"] = asyncio.Event()
            book["open"].set()
            shared = SharedBook(-1)
            await shared.first_read()
            await shared.refresh(seq=3)
            return shared.exists, book["reads"]

        assert asyncio.run(scenario()) == (False, 1)
