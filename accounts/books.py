"""One book per followed account in a server process, shared by every socket that follows it.

Ten sockets following one account (a trader's tabs, a desk's screens) need the same valuation at each tick.
Each kept its own `Book` (accounts.pnl) and valued it once per batch of ticks, so a burst cost the process
one valuation and one JSON encoding per socket. Here the process keeps one `SharedBook` per account on each
event loop: it registers with the tick hub (market.tickhub) for the tokens the account holds, marks its book
once per batch, tells its sockets which instruments moved, and builds each `position_prices` message once:
the sockets that send the same moved instruments at the same marks send the same text.

A paper account's book is Thor's positions and funds (accounts.pnl); a live account's is the broker's positions
from its last-good snapshot (accounts.live_pnl): a read that finds no snapshot (none stored yet, or gone)
keeps the positions the book had rather than blanking them.

Reading the book again is shared too. The account's stream messages (an order, a fill) reach each of its
sockets; the first to ask with a stream seq the book has not seen starts a read, the others with that seq
wait for it (it began after the change was committed: the message is published on commit). The follow
marks' renewal asks for a read only when the book is older than `max_age`. A live account's book is read again,
once the same way, when a REST read stores new broker positions (`book.stored`, by when they were
stored). A read asked for while one is under way runs once more after it, so no change is missed.

A book is dropped when its last socket leaves. What it holds is what a socket may be sent: a socket joins only
accounts its user may follow (accounts.consumers checks that before `subscribed`).
"""

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

import orjson
from channels.db import database_sync_to_async

from accounts.live_pnl import LiveBook
from accounts.pnl import AnyBook, Instrument, book_load, book_tick, position_prices_message
from market.tickhub import Tick, tick_hub

logger = logging.getLogger("accounts.books")


class BookFollower(Protocol):
    def book_moved(self, account_id: int, instruments: set[Instrument]) -> None: ...


class SharedBook:
    """One account's book on one event loop, its followers, and the messages built at its current marks."""

    def __init__(self, account_id: int):
        self.account_id = account_id
        self.book: AnyBook | None = None
        self.exists = True  # until a read finds the account gone
        self.followers: weakref.WeakSet[BookFollower] = weakref.WeakSet()
        self.heard_at = 0.0  # when the latest tick that moved the book was heard (epoch seconds)
        self.loaded_at = float("-inf")  # monotonic: when the last read began
        self.seq_seen = 0  # the highest stream seq a read was asked for
        self.stored_seen = 0.0  # when the newest live snapshot a read was asked for was stored (epoch seconds)
        self.wanted = 0  # reads asked for; `read` is the count the last finished read answers
        self.read = 0
        self.reading: asyncio.Task | None = None
        self.messages: dict[frozenset[Instrument], str] = {}  # at the current marks

    @property
    def tokens(self) -> frozenset[int]:
        return frozenset(self.book.tokens) if self.book is not None else frozenset()

    # --- ticks (the tick hub calls this on the loop) ---------------------------------------------------

    def ticks_heard(self, ticks: list[Tick]) -> None:
        if self.book is None:
            return
        moved: set[Instrument] = set()
        for token, price, received_at in ticks:
            instruments = book_tick(self.book, token, price)
            if instruments:
                moved |= instruments
                self.heard_at = max(self.heard_at, received_at)
        if not moved:
            return
        self.messages.clear()
        for follower in list(self.followers):
            try:
                follower.book_moved(self.account_id, moved)
            except Exception:
                logger.exception("A socket failed on its account's prices")

    def message_text(self, instruments: Iterable[Instrument]) -> str | None:
        """The `position_prices` message of these instruments at the book's marks, encoded once for every
        socket that sends it before the marks move again."""
        if self.book is None:
            return None
        key = frozenset(instruments)
        text = self.messages.get(key)
        if text is None:
            as_of = datetime.fromtimestamp(self.heard_at, tz=UTC)
            # orjson: every value is already text or a number (accounts.presenters), and this runs once an account
            # a batch of ticks in every server process.
            text = self.messages[key] = orjson.dumps(position_prices_message(self.book, key, as_of=as_of)).decode()
        return text

    # --- reading the book -------------------------------------------------------------------------------

    async def refresh(
        self, *, seq: int | None = None, stored_at: float | None = None, max_age: float | None = None
    ) -> None:
        """Read the book again, or wait for a read that answers this ask (see the module's docstring)."""
        if not self.exists:
            return
        if seq is not None and seq <= self.seq_seen:
            await self._wait(self.wanted)  # the read begun for that seq (or a later one)
            return
        if stored_at is not None and stored_at <= self.stored_seen:
            await self._wait(self.wanted)  # the read begun for that snapshot (or a later one)
            return
        if max_age is not None and time.monotonic() - self.loaded_at < max_age:
            return
        if seq is not None:
            self.seq_seen = seq
        if stored_at is not None:
            self.stored_seen = stored_at
        self.wanted += 1
        await self._wait(self.wanted)

    async def first_read(self) -> None:
        """Wait until the book has been read once (the first follower's read, or this one)."""
        self.wanted = max(self.wanted, 1)
        await self._wait(1)

    async def _wait(self, answered: int) -> None:
        while self.read < answered:
            if self.reading is None:
                self.reading = asyncio.get_running_loop().create_task(self._read())
            # Shielded: a socket closing while it waits must not cancel the read the others wait for.
            await asyncio.shield(self.reading)

    async def _read(self) -> None:
        try:
            while self.read < self.wanted:
                answers = self.wanted
                self.loaded_at = time.monotonic()
                try:
                    book = await database_sync_to_async(book_load)(self.account_id)
                except Exception as error:
                    # Prices are a courtesy: the sockets and their order streams go on with the book they had. The
                    # type only: a cache or database error's text may carry its server's address and credentials.
                    logger.warning(
                        "Could not read the book of account %s for its prices: %s",
                        self.account_id,
                        type(error).__name__,
                    )
                else:
                    self._install(book)
                self.read = answers
        finally:
            self.reading = None

    def _install(self, book: AnyBook | None) -> None:
        if book is None:
            self.exists = False
        if isinstance(book, LiveBook) and not book.found and isinstance(self.book, LiveBook):
            return  # no snapshot to read: the positions the book had stand until a REST read stores one
        self.book = book
        self.messages.clear()
        hub = tick_hub()
        if self.followers:
            hub.listen(self, self.tokens)


class BookRegistry:
    """One event loop's shared books by account."""

    def __init__(self):
        self.books: dict[int, SharedBook] = {}

    async def join(self, follower: BookFollower, account_id: int) -> SharedBook:
        """The account's book with `follower` among its followers; read now unless another socket keeps it."""
        shared = self.books.get(account_id)
        if shared is None:
            shared = self.books[account_id] = SharedBook(account_id)
        shared.followers.add(follower)
        if shared.read == 0:
            await shared.first_read()
        elif shared.book is not None:
            tick_hub().listen(shared, shared.tokens)
        return shared

    def leave(self, follower: BookFollower, account_id: int) -> None:
        shared = self.books.get(account_id)
        if shared is None:
            return
        shared.followers.discard(follower)
        if not shared.followers:
            del self.books[account_id]
            tick_hub().forget(shared)


_registries: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BookRegistry]" = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def book_registry() -> BookRegistry:
    """The running loop's registry (made on first use)."""
    loop = asyncio.get_running_loop()
    with _registries_lock:
        registry = _registries.get(loop)
        if registry is None:
            registry = _registries[loop] = BookRegistry()
        return registry
