"""Real-time P&L of a live account (Kite, Schwab): the broker's positions moved by the ticks, in memory.

A paper account's book (accounts.pnl) is Thor's own numbers, valued again at each tick. A live account's are
the broker's: its book is the positions of the account's last-good snapshot (accounts.live.live_snapshot_peek,
what the last REST read stored), never a call to the broker from the socket's path. Without a snapshot the
book holds nothing until a REST read stores one; a read of the book that finds none keeps what it had
(accounts.books).

At a tick a position moves from the broker's numbers, not from Thor's: its last price becomes the tick's, and
its unrealised P&L, day P&L and value each move by (new - snapshot's last price) * quantity * multiplier
(Kite's `multiplier`, 1 elsewhere); realised P&L and everything else stay the broker's. The funds are not
recomputed (`funds: null`): the broker's margins depend on more than the prices.

REST is not changed by the socket: GET .../positions keeps answering the broker's snapshot (its last price as
the broker last said it), while the socket's prices run ahead of it until the next read.

A position the ticks cannot move is left out of the book (and so never subscribed): no streaming token (neither
its own nor the master's), no quantity (a closed position's P&L does not move), numbers that are not finite
Decimals, or anything that the presenter cannot show.
"""

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.utils import timezone

from accounts import presenters
from accounts.live import live_snapshot_peek
from accounts.models import TradingAccount
from brokers.adapters.types import Position
from brokers.models import BrokerConnection
from market.selectors import instrument_token
from market.us_tokens import us_token
from thor.money import CENT, ROUNDING, to_decimal

logger = logging.getLogger("accounts.live_pnl")

Instrument = tuple[str, str]  # (exchange, symbol), as accounts.pnl's
TokenOf = Callable[[Position], int | None]


@dataclass(frozen=True)
class Held:
    """A broker position the ticks can move, with its contract multiplier."""

    position: Position
    multiplier: Decimal

    @property
    def instrument(self) -> Instrument:
        return (self.position.exchange, self.position.symbol)


@dataclass
class LiveBook:
    """What a tick needs to move a live account's positions: read by `live_book_load`, marked by accounts.pnl's
    `book_tick`. `found` is False when the account had no snapshot to read."""

    account_id: int
    held: list[Held]
    marks: dict[Instrument, Decimal]
    tokens: dict[int, set[Instrument]] = field(default_factory=dict)  # token -> the instruments held on it
    found: bool = True


def live_book_load(account: TradingAccount) -> LiveBook:
    """The account's book from its last-good positions (no broker call); empty while its session has ended."""
    if not _session_usable(account.connection):
        # As a REST read: numbers from a session that is gone are not shown.
        return LiveBook(account_id=account.pk, held=[], marks={})
    data = live_snapshot_peek(account=account, what="positions")
    if data is None:
        return LiveBook(account_id=account.pk, held=[], marks={}, found=False)
    return live_book_of(account.pk, data, token_of=position_token)


def _session_usable(connection: BrokerConnection | None) -> bool:
    # Read only: connection_require_active may renew tokens at the broker, which the socket's path never calls.
    if connection is None or connection.status != BrokerConnection.Status.ACTIVE:
        return False
    return connection.access_expires_at is None or connection.access_expires_at > timezone.now()


def position_token(position: Position) -> int | None:
    """The position's streaming token: the broker's (Kite gives it), else the master's; a Schwab position (no
    exchange) by its symbol (market.us_tokens, what the Schwab stream follows)."""
    token = position.instrument_token
    if isinstance(token, int) and not isinstance(token, bool) and token > 0:
        return token
    if not isinstance(position.symbol, str) or not isinstance(position.exchange, str) or not position.symbol:
        return None
    if not position.exchange:
        return us_token(position.symbol)
    return instrument_token(exchange=position.exchange, tradingsymbol=position.symbol)


def live_book_of(account_id: int, data, *, token_of: TokenOf) -> LiveBook:
    """The book of these snapshot positions, each the ticks can move with its token from `token_of`."""
    book = LiveBook(account_id=account_id, held=[], marks={})
    for position in data if isinstance(data, list) else ():
        held = _held(position)
        token = token_of(held.position) if held is not None else None
        if held is None or token is None:
            continue
        book.held.append(held)
        book.marks.setdefault(held.instrument, held.position.last_price)
        book.tokens.setdefault(token, set()).add(held.instrument)
    return book


def _held(position) -> Held | None:
    if not isinstance(position, Position):
        return None
    if not all(_finite(value) for value in (position.quantity, position.last_price)) or not position.quantity:
        return None
    multiplier = _multiplier(position.raw)
    if multiplier is None:
        return None
    try:
        presenters.position_data(position)  # what the message shows must be showable, once moved as well
        presenters.position_data(live_position_at(Held(position, multiplier), position.last_price))
    except (ArithmeticError, TypeError, ValueError):
        logger.warning("A live position that cannot be shown is left out of its account's prices")
        return None
    return Held(position, multiplier)


def _finite(value) -> bool:
    return isinstance(value, Decimal) and value.is_finite()


def _multiplier(raw) -> Decimal | None:
    """Kite's contract multiplier (1 when not given); None when it is given but is no positive number."""
    value = raw.get("multiplier") if isinstance(raw, dict) else None
    if value is None or value == "" or value == 0:
        return Decimal("1")
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        multiplier = to_decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return multiplier if multiplier.is_finite() and multiplier > 0 else None


def live_position_at(held: Held, last_price: Decimal) -> Position:
    """The broker's position at `last_price`: its P&L and value moved by the price's move since the snapshot."""
    position = held.position
    move = (last_price - position.last_price) * position.quantity * held.multiplier
    return dataclasses.replace(
        position,
        last_price=last_price,
        unrealised_pnl=_moved(position.unrealised_pnl, move),
        day_pnl=_moved(position.day_pnl, move),
        value=_moved(position.value, move),
    )


def _moved(amount, move: Decimal):
    # An amount the broker did not give as a number stays as it was: the presenter shows it as null.
    return (amount + move).quantize(CENT, rounding=ROUNDING) if _finite(amount) else amount


def live_prices_data(book: LiveBook, instruments: Iterable[Instrument]) -> dict:
    """The `position_prices` message's `data`: the positions on `instruments` at the marks, and no funds."""
    instruments = set(instruments)
    positions = [
        presenters.position_data(live_position_at(held, book.marks[held.instrument]))
        for held in book.held
        if held.instrument in instruments
    ]
    return {"positions": positions, "funds": None}
