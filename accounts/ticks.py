"""The order socket's prices (accounts.consumers): the P&L of the accounts it follows as ticks move it, and the
ticks of the instruments it watches.

The market stream publishes each batch of ticks it hears once, to its server process's tick hub
(market.tickhub). The books of the accounts a socket follows are shared by every socket of the process
that follows them (accounts.books): each registers with the hub for what its account holds, is marked once a
batch and tells its sockets which positions moved, read again when the account's stream says it changed. A
socket registers with the hub itself only for the instruments it watches. It asks the market stream to
stream both (market.services.ticks_watch, a lease the process renews for all its sockets with their follow
marks: accounts.renewal), and forgets them all when it closes. A tick is arithmetic on the books in memory:
no database read.

What the socket sends is throttled, per socket, to THOR_WS_PRICE_UPDATES_PER_SECOND and coalesced: the
first batch after a quiet period goes at once, whole; the batches within the period after it wait for its
end and go together, as one message, each instrument at its latest price. Messages, neither of them with a
`seq` (state, not events: the latest one is all a client needs, and the stream's resync is about events
only):

- `{"type": "position_prices", "account_id", "as_of", "data": {"positions": [...], "funds": {...}}}`: the
  positions whose price moved and the account's funds, as GET .../positions and .../funds show them. For a
  live account (Kite, Schwab; accounts.live_pnl) the positions are the broker's last-good snapshot moved by
  the ticks, and `funds` is null: the broker's margins are not recomputed from ticks. REST keeps answering
  the broker's snapshot, so a live account's socket runs ahead of its GET .../positions until the next read;
- `{"type": "ticks", "as_of", "data": [{"instrument": "NSE:INFY", "instrument_token", "last_price",
  "as_of"}, ...]}`: the watched instruments whose price moved.

What a client sends: `{"action": "watch", "instruments": ["NSE:INFY", "NFO:NIFTY26DECFUT"]}` (listed in the
instrument master and streamed; at most THOR_WS_MAX_WATCHED a socket), answered `{"type": "watching",
"instruments": [...]}` with everything the socket watches, then a `ticks` message with the prices already
heard; `{"action": "unwatch", "instruments": [...]}`, answered the same way.
"""

import asyncio
import logging
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings

from accounts import presenters
from accounts.books import SharedBook, book_registry
from accounts.pnl import Instrument
from market.selectors import instrument_tokens, last_prices
from market.services import ticks_watch
from market.tickhub import Tick, tick_hub
from thor.coordination import OccasionalWarning
from thor.fields import timestamp_text

logger = logging.getLogger("accounts.ticks")

# "EXCHANGE:TRADINGSYMBOL" as the master spells it: indices have spaces ("NSE:NIFTY 50"), some symbols & or -.
INSTRUMENT_NAME = re.compile(r"[A-Z]{2,8}:[A-Za-z0-9][A-Za-z0-9 &._-]{0,63}")

# What clock the throttle reads: the tests move their own.
clock = time.monotonic


class Throttle:
    """At most one send a `period`: `wait()` says how long until the next may go."""

    def __init__(self, period: float):
        self.period = period
        self.last: float | None = None

    def wait(self) -> float:
        return 0.0 if self.last is None else max(0.0, self.last + self.period - clock())

    def sent(self) -> None:
        self.last = clock()


def instruments_resolve(names: list[str]) -> dict[str, int | None]:
    """Each "EXCHANGE:TRADINGSYMBOL" with its streaming token (None: not listed, or not streamed)."""
    instruments = {name: tuple(name.split(":", 1)) for name in names}
    tokens = instrument_tokens(instruments.values())
    return {name: tokens.get(instrument) for name, instrument in instruments.items()}


def _instrument_names(value) -> list[str] | None:
    """The names asked for, once each, or None when `instruments` is not a list of well-formed names."""
    if not isinstance(value, list) or not value or len(value) > settings.THOR_WS_MAX_WATCHED:
        return None
    if not all(isinstance(name, str) and INSTRUMENT_NAME.fullmatch(name) for name in value):
        return None
    return list(dict.fromkeys(value))


_store_down = OccasionalWarning(logger)


def _ticks_watch_or_warn(tokens) -> None:
    try:
        ticks_watch(tokens)
    except Exception as error:
        # The type only: a connection error's text may carry the Redis URL. The next renewal asks again.
        _store_down("Could not ask the market stream for ticks: %s", type(error).__name__)


# Cache calls off the event loop, and off the one database thread the connects queue on.
_watch_or_warn = sync_to_async(_ticks_watch_or_warn, thread_sensitive=False)
_last_prices = sync_to_async(last_prices, thread_sensitive=False)


class RenewedPrices(Protocol):
    books: dict[int, SharedBook]
    watch_tokens: set[int]

    def tick_tokens_renewed(self) -> set[int]: ...


async def prices_renew(sockets: list[RenewedPrices]) -> None:
    """The renewal of the process's sockets' prices (accounts.renewal, with their follow marks): each shared book
    read again if none was read within THOR_WS_FOLLOW_SECONDS (what changes a book without a stream message,
    such as the day's charges at midnight, is rare; the stream says the rest at once), once however many of the
    sockets follow it, and the market stream's lease renewed for all their tokens in one call."""
    try:
        max_age = settings.THOR_WS_FOLLOW_SECONDS
        # dict.fromkeys: each book once, in the order the sockets follow them.
        for shared in dict.fromkeys(shared for socket in sockets for shared in list(socket.books.values())):
            await shared.refresh(max_age=max_age)
        tokens: set[int] = set()
        for socket in sockets:
            socket.tick_tokens_renewed()
            tokens |= socket.watch_tokens
        if tokens:
            await _watch_or_warn(tokens)
    except Exception as error:
        # A cache or channel layer outage must not end the follow marks' renewal (the type only, as above).
        _store_down("Could not renew the sockets' prices: %s", type(error).__name__)


class PricesMixin:
    """Real-time P&L and watched ticks for accounts.consumers.OrderUpdatesConsumer."""

    def _prices_init(self) -> None:
        self.books: dict[int, SharedBook] = {}  # the followed accounts' books, shared in the process
        self.watched: dict[int, str] = {}  # token -> "EXCHANGE:TRADINGSYMBOL"
        self.watch_tokens: set[int] = set()  # what the market stream is asked to stream for this socket
        self.moved: dict[int, set[Instrument]] = {}  # account id -> instruments moved since the last send
        self.heard: dict[int, tuple[Decimal, float]] = {}  # watched token -> (latest price, when heard)
        self.heard_at = 0.0  # when the latest watched tick not yet sent was heard (epoch seconds)
        self.throttle = Throttle(1 / settings.THOR_WS_PRICE_UPDATES_PER_SECOND)
        self.flush_timer: asyncio.TimerHandle | None = None
        self.flush_task: asyncio.Task | None = None
        self.sending = False
        self.prices_closed = False

    async def _books_join(self, account_ids) -> None:
        """Follow the books of these accounts (read now unless another socket of the process keeps them)."""
        registry = book_registry()
        for account_id in account_ids:
            if account_id in self.books:
                continue
            shared = await registry.join(self, account_id)
            if account_id in self.sent_seq:
                self.books[account_id] = shared
            else:  # unsubscribed while its book was read
                registry.leave(self, account_id)
        await self._tick_tokens_match()

    async def _books_refresh(self, seqs: dict[int, int]) -> None:
        """Something changed on these accounts (stream messages up to these seqs): their books are read again,
        once in the process however many sockets follow them."""
        for account_id, seq in seqs.items():
            shared = self.books.get(account_id)
            if shared is not None:
                await shared.refresh(seq=seq)
        await self._tick_tokens_match()

    async def book_stored(self, event: dict) -> None:
        """Channel layer: the broker's positions of a followed live account were stored again (accounts.live)."""
        shared = self.books.get(event.get("account_id"))
        stored_at = event.get("stored_at")
        if shared is not None and isinstance(stored_at, float):
            await shared.refresh(stored_at=stored_at)
            await self._tick_tokens_match()

    async def _books_forget(self, account_id: int) -> None:
        if self.books.pop(account_id, None) is not None:
            book_registry().leave(self, account_id)
        self.moved.pop(account_id, None)
        await self._tick_tokens_match()

    def book_moved(self, account_id: int, instruments: set[Instrument]) -> None:
        """A followed account's book moved (accounts.books, on this socket's loop)."""
        if account_id in self.books:
            self.moved.setdefault(account_id, set()).update(instruments)
            self._prices_kick()

    async def _tick_tokens_match(self) -> None:
        """The tick hub hands this socket its watched tokens (the books take the held ones); the market stream
        is asked for both."""
        joined = self.tick_tokens_renewed()
        if joined:
            # The process's subscription in place before the socket is told it follows (or watches): a tick
            # published from then on reaches it. A Redis that does not answer holds it only a moment.
            await tick_hub().ready()
            await _watch_or_warn(joined)

    def tick_tokens_renewed(self) -> set[int]:
        """What the market stream is to stream for this socket, its books' held tokens as they are now and its
        watched ones, with the tick hub told the watched ones: the tokens it was not asked for yet."""
        if self.prices_closed:
            # Closed while a renewal that counted it was under way: registering it again would keep it in the hub.
            return set()
        tick_hub().listen(self, self.watched)
        wanted = {token for shared in self.books.values() for token in shared.tokens} | set(self.watched)
        joined = wanted - self.watch_tokens
        self.watch_tokens = wanted
        return joined

    async def _prices_close(self) -> None:
        self.prices_closed = True
        if self.flush_timer is not None:
            self.flush_timer.cancel()
        if self.flush_task is not None:
            self.flush_task.cancel()
        registry = book_registry()
        for account_id in self.books:
            registry.leave(self, account_id)
        self.books = {}
        tick_hub().forget(self)
        self.watch_tokens = set()

    # --- watch and unwatch --------------------------------------------------------------------

    async def _answer_watch(self, message: dict) -> None:
        names = _instrument_names(message.get("instruments"))
        if names is None:
            await self._instruments_error()
            return
        new = [name for name in names if name not in self.watched.values()]
        if len(self.watched) + len(new) > settings.THOR_WS_MAX_WATCHED:
            await self._send_error(
                "too_many_instruments", f"A socket watches at most {settings.THOR_WS_MAX_WATCHED} instruments."
            )
            return
        resolved = await database_sync_to_async(instruments_resolve)(new)
        unknown = [name for name, token in resolved.items() if token is None]
        if unknown:
            await self._send_error(
                "unknown_instruments",
                "Not listed, or not streamed: nothing was watched.",
                instruments=unknown,
            )
            return
        self.watched.update({token: name for name, token in resolved.items()})
        await self._tick_tokens_match()
        await self._send_watching()
        # The prices already heard, so that the client need not wait for the next tick.
        try:
            heard = await _last_prices(list(resolved.values()))
        except Exception as error:
            _store_down("Could not read the market stream's last prices: %s", type(error).__name__)
            return
        for token, price in heard.items():
            self._tick_heard(token, price.last_price, price.received_at)
        if heard:
            self._prices_kick()

    async def _answer_unwatch(self, message: dict) -> None:
        names = _instrument_names(message.get("instruments"))
        if names is None:
            await self._instruments_error()
            return
        for token in [token for token, name in self.watched.items() if name in names]:
            del self.watched[token]
            self.heard.pop(token, None)
        await self._tick_tokens_match()
        await self._send_watching()

    async def _send_watching(self) -> None:
        await self.send_json({"type": "watching", "instruments": sorted(self.watched.values())})

    async def _instruments_error(self) -> None:
        await self._send_error(
            "invalid_instruments",
            f'`instruments` is a list of 1 to {settings.THOR_WS_MAX_WATCHED} names such as "NSE:INFY".',
        )

    # --- ticks --------------------------------------------------------------------------------

    def ticks_heard(self, ticks: list[Tick]) -> None:
        """A batch of ticks from the tick hub (market.tickhub, on this socket's loop), each of an instrument the
        socket watches (the books hear the held ones: `book_moved`)."""
        changed = False
        for token, price, received_at in ticks:
            if token in self.watched:
                self._tick_heard(token, price, received_at)
                changed = True
        if changed:
            self._prices_kick()

    def _tick_heard(self, token: int, price: Decimal, received_at: float) -> None:
        self.heard[token] = (price, received_at)
        self.heard_at = max(self.heard_at, received_at)

    def _prices_kick(self) -> None:
        """Send now if the throttle lets it; else once its period ends (already planned, or a send under way
        that plans it: nothing to do)."""
        if self.flush_timer is not None or self.sending:
            return
        wait = self.throttle.wait()
        if wait <= 0:
            self._prices_start()
            return
        self.flush_timer = asyncio.get_running_loop().call_later(wait, self._prices_due)

    def _prices_due(self) -> None:
        self.flush_timer = None
        wait = self.throttle.wait()
        if wait > 0:  # the throttle's clock says the period is not over yet
            self.flush_timer = asyncio.get_running_loop().call_later(wait, self._prices_due)
            return
        self._prices_start()

    def _prices_start(self) -> None:
        self.sending = True
        self.flush_task = asyncio.get_running_loop().create_task(self._prices_flush())

    async def _prices_flush(self) -> None:
        try:
            await self._prices_send()
        except Exception:
            # The socket is closing under it: its disconnect cleans up.
            logger.debug("Could not send the socket's prices", exc_info=True)
        finally:
            self.sending = False
        if self.moved or self.heard:  # ticks heard while it was sending: at the next period's end
            self._prices_kick()

    async def _prices_send(self) -> None:
        moved, self.moved = self.moved, {}
        heard, self.heard = self.heard, {}
        if not moved and not heard:
            return
        self.throttle.sent()
        for account_id, instruments in moved.items():
            shared = self.books.get(account_id)
            text = shared.message_text(instruments) if shared is not None else None
            if text is not None:
                await self.send(text_data=text)
        if heard:
            ticks = [
                presenters.tick_data(
                    instrument=self.watched[token],
                    instrument_token=token,
                    last_price=price,
                    as_of=datetime.fromtimestamp(received_at, tz=UTC),
                )
                for token, (price, received_at) in sorted(heard.items())
                if token in self.watched
            ]
            if ticks:
                as_of = datetime.fromtimestamp(self.heard_at, tz=UTC)
                await self.send_json({"type": "ticks", "as_of": timestamp_text(as_of), "data": ticks})
