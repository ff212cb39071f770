"""The order sockets' renewal, once a period for all the sockets of a server process (accounts.renewal): one
query for their sessions, one cache call for their follow marks, one lease for their tokens, however many
sockets are open; only the logged-out ones closed; the task gone with the last socket; outages fail nothing.

Real channel layer, cache and database, as the other socket tests (test_consumers). THOR_WS_FOLLOW_SECONDS is
set to a fraction of a second so that rounds come every fifth of a second or so: no long sleeps.
"""

import asyncio
import logging

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import OperationalError
from rest_framework_simplejwt.tokens import AccessToken

from accounts import followers, ticks
from accounts.books import SharedBook
from accounts.followers import followed_account_ids
from accounts.renewal import renewal
from accounts.services import trading_account_create_paper
from accounts.tests.test_consumers import opened, primary_id
from identity import sessions
from identity.sessions import SESSION_CLAIM, session_revoke
from identity.tokens import token_pair_for
from market.tickhub import TickHub, tick_hub

pytestmark = pytest.mark.django_db(transaction=True)

FOLLOW_SECONDS = 0.6  # a round every 0.2 s
INFY, SBIN = 408065, 779521
WATCHES = (["NSE:INFY"], ["NSE:SBIN"], ["NSE:INFY", "NSE:SBIN"])  # three sockets', two tokens between them


@pytest.fixture(autouse=True)
def quick_rounds(settings):
    settings.THOR_WS_FOLLOW_SECONDS = FOLLOW_SECONDS


@pytest.fixture
def rounds(monkeypatch) -> list[tuple[str, object]]:
    """What the renewal asked for, in order: ("sessions", sids), ("marks", account ids), ("lease", tokens).
    The connects' own marks and the watches' own leases are not the renewal's, and not recorded."""
    calls: list[tuple[str, object]] = []
    real_revoked, real_mark, real_watch = (
        sessions.revoked_session_ids,
        followers.accounts_mark_followed,
        ticks._watch_or_warn,
    )

    def revoked_session_ids(sids):
        calls.append(("sessions", frozenset(sids)))
        return real_revoked(sids)

    def accounts_mark_followed(account_ids):
        calls.append(("marks", frozenset(account_ids)))
        return real_mark(account_ids)

    async def watch_or_warn(tokens):
        if asyncio.current_task().get_coro().__qualname__ == "Renewal._run":
            calls.append(("lease", frozenset(tokens)))
        await real_watch(tokens)

    monkeypatch.setattr("accounts.renewal.revoked_session_ids", revoked_session_ids)
    monkeypatch.setattr("accounts.renewal.accounts_mark_followed", accounts_mark_followed)
    monkeypatch.setattr("accounts.ticks._watch_or_warn", watch_or_warn)
    return calls


def whole_rounds(calls: list[tuple[str, object]]) -> list[list[tuple[str, object]]]:
    """The calls grouped by round (each begins with its marks), a round cut short at the start dropped."""
    grouped: list[list[tuple[str, object]]] = []
    for call in calls:
        if call[0] == "marks":
            grouped.append([call])
        elif grouped:
            grouped[-1].append(call)
    return grouped


def session_of(access: str) -> str:
    return AccessToken(access)[SESSION_CLAIM]


def renewal_tasks() -> list[asyncio.Task]:
    return [task for task in asyncio.all_tasks() if task.get_coro().__qualname__ == "Renewal._run"]


async def pong(communicator) -> dict:
    await communicator.send_json_to({"action": "ping"})
    return await communicator.receive_json_from(timeout=2)


class TestOneRenewalForAllTheSockets:
    def test_ten_sockets_are_renewed_with_one_query_and_one_mark_call_a_period(self, alice, bob, rounds):
        bobs_usd = trading_account_create_paper(user=bob, currency="USD")
        alices = [token_pair_for(alice)["access"] for _ in range(5)]
        bobs = [token_pair_for(bob)["access"] for _ in range(5)]
        paths = [f"/ws/orders/primary?token={token}" for token in alices] + [
            f"/ws/orders?token={token}" for token in bobs
        ]
        following = [1] * 5 + [2] * 5

        async def scenario():
            sockets = [await opened(path, following=count) for path, count in zip(paths, following, strict=True)]
            rounds.clear()  # the rounds while they were joining
            await asyncio.sleep(3.5 * FOLLOW_SECONDS / 3)
            seen = list(rounds)
            for communicator in sockets:
                await communicator.disconnect()
            return seen

        seen = whole_rounds(async_to_sync(scenario)())

        sids = frozenset(session_of(token) for token in alices + bobs)
        accounts = frozenset({primary_id(alice), primary_id(bob), bobs_usd.pk})
        assert 2 <= len(seen) <= 4, seen  # a round a period, not one a socket
        assert all(round_ == [("marks", accounts), ("sessions", sids)] for round_ in seen), seen

    @pytest.mark.usefixtures("instrument_master", "ticks_flushed")
    def test_the_market_streams_lease_is_renewed_once_for_every_sockets_tokens(self, alice, bob, rounds):
        paths = [f"/ws/orders/primary?token={token_pair_for(user)['access']}" for user in (alice, bob, bob)]

        async def scenario():
            sockets = [await opened(path) for path in paths]
            for communicator, instruments in zip(sockets, WATCHES, strict=True):
                await communicator.send_json_to({"action": "watch", "instruments": instruments})
                assert (await communicator.receive_json_from(timeout=2))["type"] == "watching"
            rounds.clear()
            await asyncio.sleep(2.5 * FOLLOW_SECONDS / 3)
            seen = list(rounds)
            for communicator in sockets:
                await communicator.disconnect()
            return seen

        leases = [call for round_ in whole_rounds(async_to_sync(scenario)()) for call in round_ if call[0] == "lease"]

        assert leases and all(lease == ("lease", frozenset({INFY, SBIN})) for lease in leases), leases

    def test_a_socket_that_joins_between_two_rounds_never_sees_its_marks_run_out(self, alice, bob):
        alices_path = f"/ws/orders/primary?token={token_pair_for(alice)['access']}"
        bobs_path = f"/ws/orders/primary?token={token_pair_for(bob)['access']}"
        accounts = {primary_id(alice), primary_id(bob)}

        async def scenario():
            first = await opened(alices_path)
            await asyncio.sleep(FOLLOW_SECONDS / 6)  # half a period: the second joins between two rounds
            second = await opened(bobs_path)
            looks = []
            for _ in range(12):  # two marks' lifetimes, looking every tenth of one
                looks.append(await sync_to_async(followed_account_ids)(accounts))
                await asyncio.sleep(FOLLOW_SECONDS / 6)
            for communicator in (first, second):
                await communicator.disconnect()
            return looks

        assert async_to_sync(scenario)() == [accounts] * 12

    @pytest.mark.usefixtures("instrument_master", "ticks_flushed")
    def test_a_socket_that_closes_while_a_round_reads_its_book_is_not_listened_for_again(self, alice, monkeypatch):
        paths = [f"/ws/orders/primary?token={token_pair_for(alice)['access']}" for _ in range(2)]
        real_refresh, real_listen = SharedBook.refresh, TickHub.listen
        closed_listening = []

        def listen(hub, listener, tokens):
            if getattr(listener, "prices_closed", False) and tokens:
                closed_listening.append(frozenset(tokens))
            real_listen(hub, listener, tokens)

        async def scenario():
            reading, release = asyncio.Event(), asyncio.Event()

            async def held_refresh(book, **asked):
                if asked.get("max_age") is not None:  # the renewal's
                    reading.set()
                    await release.wait()
                await real_refresh(book, **asked)

            closing, staying = [await opened(path) for path in paths]
            for communicator, instruments in ((closing, ["NSE:INFY"]), (staying, ["NSE:SBIN"])):
                await communicator.send_json_to({"action": "watch", "instruments": instruments})
                assert (await communicator.receive_json_from(timeout=2))["type"] == "watching"
            monkeypatch.setattr(SharedBook, "refresh", held_refresh)
            monkeypatch.setattr(TickHub, "listen", listen)
            await asyncio.wait_for(reading.wait(), timeout=2)  # a round is at their shared book
            await closing.disconnect()
            release.set()
            await asyncio.sleep(0.1)  # the round has gone on to the sockets' tokens
            registered = tick_hub().registered()
            await staying.disconnect()
            return registered

        assert async_to_sync(scenario)() == {SBIN: 1}
        assert closed_listening == []  # not even until the closed consumer is collected


class TestLoggingOut:
    def test_only_the_logged_out_sessions_socket_closes_and_it_leaves_the_renewal(self, alice, rounds):
        staying, ending = token_pair_for(alice), token_pair_for(alice)
        # A token from before sessions had ids: nothing to check, it ends when it expires.
        sessionless = str(AccessToken.for_user(alice))

        async def scenario():
            stays = await opened(f"/ws/orders/primary?token={staying['access']}")
            ends = await opened(f"/ws/orders/primary?token={ending['access']}")
            old = await opened(f"/ws/orders?token={sessionless}")
            await sync_to_async(session_revoke)(sid=session_of(ending["access"]))
            closing = await ends.receive_output(timeout=2 * FOLLOW_SECONDS / 3)  # within a period (and a bit)
            await ends.disconnect(code=closing["code"])
            rounds.clear()
            quiet = [await communicator.receive_nothing(timeout=FOLLOW_SECONDS / 2) for communicator in (stays, old)]
            answers = [await pong(communicator) for communicator in (stays, old)]
            seen = list(rounds)
            for communicator in (stays, old):
                await communicator.disconnect()
            return closing, quiet, answers, seen

        closing, quiet, answers, seen = async_to_sync(scenario)()

        assert closing == {"type": "websocket.close", "code": 4401}
        assert quiet == [True, True] and answers == [{"type": "pong"}] * 2
        checked = {call for round_ in whole_rounds(seen) for call in round_ if call[0] == "sessions"}
        assert checked == {("sessions", frozenset({session_of(staying["access"])}))}

    def test_a_session_logged_out_before_the_socket_opened_with_it_cannot_open_it(self, alice):
        pair = token_pair_for(alice)
        session_revoke(sid=session_of(pair["access"]))

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={pair['access']}", following=0)
            closing = await communicator.receive_output(timeout=2)
            await communicator.disconnect(code=closing["code"])
            return closing, renewal().task

        assert async_to_sync(scenario)() == ({"type": "websocket.close", "code": 4401}, None)


class TestTheTaskLivesWithTheSockets:
    def test_it_starts_with_the_first_socket_and_ends_with_the_last(self, alice):
        paths = [f"/ws/orders/primary?token={token_pair_for(alice)['access']}" for _ in range(3)]

        async def scenario():
            before = renewal_tasks()
            first, second = await opened(paths[0]), await opened(paths[1])
            task = renewal().task
            with_two = renewal_tasks()
            await first.disconnect()
            with_one = renewal_tasks()
            await second.disconnect()
            await asyncio.wait({task}, timeout=1)
            with_none = renewal_tasks()
            third = await opened(paths[2])
            again = renewal().task
            await third.disconnect()
            await asyncio.wait({again}, timeout=1)
            return before, task, with_two, with_one, with_none, again, renewal_tasks()

        before, task, with_two, with_one, with_none, again, after = async_to_sync(scenario)()

        assert before == [] and with_two == [task] and with_one == [task]
        assert with_none == [] and task.done()
        assert again is not task and again.done() and after == []

    def test_it_ends_when_the_last_sockets_session_is_logged_out(self, alice):
        pair = token_pair_for(alice)

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={pair['access']}")
            task = renewal().task
            await sync_to_async(session_revoke)(sid=session_of(pair["access"]))
            closing = await communicator.receive_output(timeout=2)
            await asyncio.wait({task}, timeout=1)  # before the server says the socket is gone
            ended = task.done() and renewal().task is None
            await communicator.disconnect(code=closing["code"])
            return closing, ended

        assert async_to_sync(scenario)() == ({"type": "websocket.close", "code": 4401}, True)


class BrokenCache:
    def __getattr__(self, name):
        def unreachable(*args, **kwargs):
            raise ConnectionError("redis://:secret@cache.internal:6379 is unreachable")

        return unreachable


@pytest.mark.usefixtures("instrument_master", "ticks_flushed")
class TestOutages:
    @pytest.mark.parametrize("outage", ["cache", "database"])
    def test_an_outage_during_the_renewal_leaves_the_sockets_open_and_is_logged_once(
        self, alice, bob, outage, monkeypatch, caplog
    ):
        paths = [f"/ws/orders/primary?token={token_pair_for(user)['access']}" for user in (alice, bob)]

        def database_down(sids):
            raise OperationalError("connection to server at 10.0.0.5 failed: password authentication failed")

        async def scenario():
            sockets = [await opened(path) for path in paths]
            await sockets[0].send_json_to({"action": "watch", "instruments": ["NSE:INFY"]})
            await sockets[0].receive_json_from(timeout=2)
            task = renewal().task
            if outage == "cache":
                monkeypatch.setattr("accounts.followers.cache", BrokenCache())
                monkeypatch.setattr("identity.sessions.cache", BrokenCache())
                monkeypatch.setattr("accounts.ticks.ticks_watch", BrokenCache().ticks_watch)
            else:
                monkeypatch.setattr("accounts.renewal.revoked_session_ids", database_down)
            with caplog.at_level(logging.WARNING):
                await asyncio.sleep(3.5 * FOLLOW_SECONDS / 3)  # three rounds meet it
            answers = [await pong(communicator) for communicator in sockets]
            running = not task.done() and renewal().task is task
            monkeypatch.undo()
            for communicator in sockets:
                await communicator.disconnect()
            return answers, running

        answers, running = async_to_sync(scenario)()

        assert answers == [{"type": "pong"}] * 2 and running
        by_logger: dict[str, int] = {}
        for record in caplog.records:
            if record.levelno >= logging.WARNING:
                by_logger[record.name] = by_logger.get(record.name, 0) + 1
        assert all(count == 1 for count in by_logger.values()), caplog.text  # at most once a minute
        assert "secret" not in caplog.text and "10.0.0.5" not in caplog.text
