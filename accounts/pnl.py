"""Real-time P&L: a paper account's positions and funds valued again at each tick, without a database read.

A socket that follows an account keeps the account's `Book` (accounts.ticks): its positions, cash, its resting
orders and its margin rates, read once, with the instrument token of each instrument held or rested on from the
master. The socket reads the book again whenever the account's stream says something changed (an order,
a fill) and at each renewal of its follow marks; between those, a tick is arithmetic on the book: each
position valued at its price as accounts.selectors values it for REST (accounts.paper_funds: `paper_position_at`,
`paper_funds_at`), and what its resting orders reserve and its shorts tie up reckoned at the marks as GET .../funds
reckons them (a resting short sale's margin moves with its mark: accounts.paper_buying_power.PaperCommitments),
shown by accounts.presenters.

What a socket is sent is state, not an event: `{"type": "position_prices", "account_id", "as_of", "data":
{"positions": [...], "funds": {...}}}`, the positions whose price moved since the last one (each a whole
position, as GET .../positions shows it; a client replaces the position with the same exchange,
tradingsymbol and product) and the account's funds. It carries no `seq`: a missed one is worth nothing
once the next arrives, so the stream's numbering, its gaps and its resync are about events only, as before.

Live accounts (Kite, Schwab): their book is the broker's positions from the last-good snapshot, moved by the
ticks from the broker's own numbers, with no funds (accounts.live_pnl).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from accounts import presenters, selectors
from accounts.live_pnl import LiveBook, live_book_load, live_prices_data
from accounts.models import PaperPosition, TradingAccount
from accounts.paper_buying_power import PaperCommitments, paper_commitments
from market.selectors import instrument_token
from thor.errors import ApplicationError
from thor.fields import timestamp_text

POSITION_PRICES = "position_prices"

Instrument = tuple[str, str]  # (exchange, symbol)


@dataclass
class Book:
    """What a tick needs to value an account: read by `book_load`, then changed only by `book_tick`."""

    account: TradingAccount
    positions: list[PaperPosition]
    commitments: PaperCommitments  # its resting orders and shorts: what they tie up moves with their marks
    charges_today: Decimal  # changes with a fill (a stream message: the book is read again) or at midnight
    marks: dict[Instrument, Decimal]  # market prices only: an instrument without one is not in it
    tokens: dict[int, set[Instrument]] = field(default_factory=dict)  # token -> the instruments held or rested on
    _reserved: tuple[tuple, Decimal] | None = None  # what the resting orders reserve, at the marks it was reckoned at

    def utilised(self) -> Decimal:
        """What the resting orders reserve (reckoned again only when one of their marks moved) and the open shorts
        tie up, at the book's marks."""
        marks = tuple(self.marks.get(instrument) for instrument in sorted(self.commitments.instruments))
        if self._reserved is None or self._reserved[0] != marks:
            self._reserved = (marks, self.commitments.reserved(self.marks))
        return self._reserved[1] + self.commitments.short_exposure(self.marks)

    @property
    def account_id(self) -> int:
        return self.account.pk


AnyBook = Book | LiveBook


def book_load(account_id: int) -> AnyBook | None:
    """The account's book as the database (paper) or the last-good snapshot (live) has it now; None for an
    account that is gone."""
    account = TradingAccount.objects.select_related("user__tenant", "connection").filter(pk=account_id).first()
    if account is not None and account.mode == TradingAccount.Mode.LIVE:
        return live_book_load(account)
    if account is None or account.mode != TradingAccount.Mode.PAPER:
        return None
    try:
        # The valuation REST shows (the stream's price while fresh, else the quote): the book starts where a read is,
        # its resting orders reserved at their instruments' marks as GET .../funds reserves them.
        valuation = selectors.paper_valuation(account, resting_orders=True)
        valued, market = valuation.positions, valuation.marks
    except ApplicationError:
        # No quotes right now: the ticks price what they reach; until then a position is at its average price.
        valued, market = [(position, position.average_price) for position in account.paper_positions.all()], {}
    positions = [position for position, _ in valued]
    commitments = paper_commitments(account=account)
    tokens: dict[int, set[Instrument]] = {}
    for exchange, symbol in {(position.exchange, position.symbol) for position in positions} | commitments.instruments:
        token = instrument_token(exchange=exchange, tradingsymbol=symbol)
        if token is not None:
            tokens.setdefault(token, set()).add((exchange, symbol))
    return Book(
        account=account,
        positions=positions,
        # At market prices only: a resting order on an instrument without one is reserved at its own price.
        commitments=commitments,
        charges_today=selectors.paper_charges_today(account=account),
        marks=dict(market),
        tokens=tokens,
    )


def book_tick(book: AnyBook, token: int, price: Decimal) -> set[Instrument]:
    """Mark the instruments the book holds on `token` at `price`; returns those whose mark moved."""
    moved = set()
    for instrument in book.tokens.get(token, ()):
        if book.marks.get(instrument) != price:
            book.marks[instrument] = price
            moved.add(instrument)
    return moved


def _mark(book: Book, position: PaperPosition) -> Decimal:
    # Until a price reaches it, a position is at its own average price, as REST values it: one an instrument held on
    # two products at two averages would value one of them, and its short, at the other's.
    return book.marks.get((position.exchange, position.symbol)) or position.average_price


def position_prices_message(book: AnyBook, instruments: Iterable[Instrument], *, as_of: datetime) -> dict:
    """The `position_prices` message: the positions on `instruments` and the account's funds, at the marks
    (a live account's funds: null, see accounts.live_pnl)."""
    instruments = set(instruments)
    if isinstance(book, LiveBook):
        data = live_prices_data(book, instruments)
        return {"type": POSITION_PRICES, "account_id": book.account_id, "as_of": timestamp_text(as_of), "data": data}
    valued = [(position, _mark(book, position)) for position in book.positions]
    positions = [
        presenters.position_data(selectors.paper_position_at(position, price))
        for position, price in valued
        if (position.exchange, position.symbol) in instruments
    ]
    funds = selectors.paper_funds_at(
        account=book.account,
        utilised=book.utilised(),
        valued=valued,
        charges_today=book.charges_today,
    )
    return {
        "type": POSITION_PRICES,
        "account_id": book.account_id,
        "as_of": timestamp_text(as_of),
        "data": {"positions": positions, "funds": presenters.funds_data(funds)},
    }
