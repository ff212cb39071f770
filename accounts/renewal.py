"""The order sockets' renewal, once per server process for all its sockets (one task per event loop).

While a socket is open the accounts it follows stay marked as followed (accounts.followers), its prices' books
are read again when old and the market stream keeps streaming its tokens (accounts.ticks); and a socket whose
session was logged out is closed (4401). Each socket did that itself every third of THOR_WS_FOLLOW_SECONDS: with
a thousand sockets in two processes, some 33 renewals a second, each a round trip to the one database thread
and cache calls in threads, competing for the GIL with the tick fan-out at the moments its latency is measured.
The work is the same for every socket, so the process does it once a period for them all: one query for which
of their sessions were logged out, one cache call marking the union of their accounts, one lease for the union
of their tokens, each shared book read at most once (accounts.books shares them the same way).

A socket joins once it has said `subscribed` (its accounts were marked then: accounts.consumers) and leaves
when it closes. The task starts with the first socket and ends with the last. Its rounds are every third of
THOR_WS_FOLLOW_SECONDS apart, counted from when the previous one began: a socket that joins between two rounds
is in the next, at most a third of the marks' lifetime after its own marks, which therefore never run out
while it is open. A round marks first, before it asks the database anything, and a round that overruns its
period (a slow database) is followed at once by the next.

An outage fails no socket: the cache's is logged by accounts.followers and accounts.ticks, the database's
here, each at most once a minute, and the next round tries again.
"""

import asyncio
import contextlib
import logging
import threading
import weakref
from typing import Protocol

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings

from accounts.followers import accounts_mark_followed
from accounts.ticks import RenewedPrices, prices_renew
from identity.sessions import revoked_session_ids
from thor.coordination import OccasionalWarning

logger = logging.getLogger("accounts.renewal")
_database_down = OccasionalWarning(logger)


class RenewedSocket(RenewedPrices, Protocol):
    session_id: str | None  # the session the socket was opened with (None: a token from before sessions)
    sent_seq: dict[int, int]  # the accounts it follows

    async def session_ended(self) -> None: ...


class Renewal:
    """One event loop's renewed sockets and the task that renews them."""

    def __init__(self):
        # Weak: a socket whose consumer ended without its disconnect (cancelled) is not renewed for ever.
        self.sockets: weakref.WeakSet[RenewedSocket] = weakref.WeakSet()
        self.task: asyncio.Task | None = None

    def join(self, socket: RenewedSocket) -> None:
        self.sockets.add(socket)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    def leave(self, socket: RenewedSocket) -> None:
        if socket not in self.sockets:
            return
        self.sockets.discard(socket)
        if self.sockets or self.task is None:
            return
        # The task itself leaves its revoked sockets: it ends on its own once its round is over.
        if self.task is not asyncio.current_task():
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            while True:
                began = max(began + settings.THOR_WS_FOLLOW_SECONDS / 3, loop.time())
                await asyncio.sleep(began - loop.time())
                sockets = list(self.sockets)
                if sockets:
                    await self._renew(sockets)
                if not self.sockets:  # all gone (the last one's session ended in this round)
                    return
        finally:
            if self.task is asyncio.current_task():
                self.task = None

    async def _renew(self, sockets: list[RenewedSocket]) -> None:
        # The marks first: they need only the cache, and must not wait for a database thread that is slow or
        # busy (a thousand sockets reconnecting queue there). A logged-out socket's accounts marked once more
        # run out by themselves.
        followed = {account_id for socket in sockets for account_id in socket.sent_seq}
        if followed:
            await _mark_followed(sorted(followed))
        # Each step after an await takes the sockets still joined: one may close while the round awaits.
        ended = await _sessions_ended([socket for socket in sockets if socket in self.sockets])
        for socket in sockets:
            if socket.session_id in ended and socket in self.sockets:
                self.leave(socket)
                # One socket's close failing (its connection already gone) must not spare the others.
                with contextlib.suppress(Exception):
                    await socket.session_ended()
        await prices_renew([socket for socket in sockets if socket in self.sockets])


async def _sessions_ended(sockets: list[RenewedSocket]) -> set[str]:
    """The session ids, among the sockets', that were logged out (none when the database cannot say)."""
    sids = {socket.session_id for socket in sockets if socket.session_id}
    if not sids:
        return set()
    try:
        return await database_sync_to_async(revoked_session_ids)(sids)
    except Exception as error:
        # The type only: a database or cache error's text may carry its server's address and credentials.
        _database_down("Could not check whether the sockets' sessions were logged out: %s", type(error).__name__)
        return set()


async def _mark_followed(account_ids: list[int]) -> None:
    # A cache call off the event loop, and off the one database thread the connects queue on. Looked up here
    # at each call, so that the tests can count them.
    await sync_to_async(accounts_mark_followed, thread_sensitive=False)(account_ids)


_renewals: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Renewal]" = weakref.WeakKeyDictionary()
_renewals_lock = threading.Lock()


def renewal() -> Renewal:
    """The running loop's renewal (made on first use)."""
    loop = asyncio.get_running_loop()
    with _renewals_lock:
        found = _renewals.get(loop)
        if found is None:
            found = _renewals[loop] = Renewal()
        return found
