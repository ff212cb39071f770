"""The book a paper order fills from: the levels of its quote's depth on the side it takes from.

A buy takes the asks, cheapest first; a sell the bids, dearest first. It takes what the levels show and no
more, in whole lots: a market order as much as the book holds, a limit order only the levels within its limit.
What one order of a pass takes is gone for the next order of the same pass (the slices of one placement, the
legs of a batch, an account's resting orders in one matching pass), so one quote's depth is never filled twice.

A quote without depth on that side (a source that gives only the last price) has no book here: the paper
engine fills as it did before depth, whole at the last price (accounts.paper).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from accounts.models import Order
from brokers.adapters.types import DepthLevel
from thor.money import is_market_price

ZERO = Decimal("0")
# No order may carry a price this high (an order's price has at most ten digits before the point, as the API
# takes it): a level priced at it or above is a hostile quote's, and its value would not even fit a money column.
PRICE_CEILING = Decimal("1E10")


@dataclass(frozen=True)
class Take:
    """What the book gives one order: `quantity` at `price`, the levels' quantity-weighted average (exact; the
    engine puts it on the tick), from `levels` (price, quantity), best first."""

    quantity: Decimal
    price: Decimal
    levels: tuple[tuple[Decimal, Decimal], ...]


def _usable(level: DepthLevel) -> tuple[Decimal, Decimal] | None:
    """(price, whole quantity) of a level worth filling at; None for what no exchange would show (a price or a
    quantity that is not a positive finite number, a price no order could carry), which is ignored, not
    trusted."""
    try:
        price = Decimal(str(level.price))
        quantity = Decimal(str(level.quantity)).to_integral_value(rounding=ROUND_FLOOR)
    except (InvalidOperation, TypeError, ValueError):
        return None
    if not is_market_price(price) or price >= PRICE_CEILING or not quantity.is_finite() or quantity <= 0:
        return None
    return price, quantity


class Book:
    """One side of one quote's book, as much of it as this pass has not taken yet."""

    def __init__(self, levels, *, side: str):
        self.side = side
        usable = [level for level in (_usable(level) for level in levels) if level is not None]
        # Best first whatever order the source sent them in: the cheapest ask, the dearest bid.
        usable.sort(key=lambda level: level[0], reverse=side == Order.Side.SELL)
        self._levels = [list(level) for level in usable]

    def __bool__(self) -> bool:
        return bool(self._levels)

    @property
    def best(self) -> Decimal | None:
        """The best price shown (the cheapest ask, the dearest bid); None when nothing is left."""
        return self._levels[0][0] if self._levels else None

    @property
    def worst(self) -> Decimal | None:
        """The worst price shown (the dearest ask, the cheapest bid); None when nothing is left."""
        return self._levels[-1][0] if self._levels else None

    def _within(self, price: Decimal, limit: Decimal | None) -> bool:
        if limit is None:
            return True
        return price <= limit if self.side == Order.Side.BUY else price >= limit

    def peek(self, *, quantity: Decimal, lot: int = 1, limit: Decimal | None = None) -> Take | None:
        """What an order for `quantity` (within `limit`, if any) would take, in whole lots of `lot`; None when not
        one lot is there. Nothing is taken until `take`."""
        lot_size = Decimal(max(int(lot), 1))
        available = sum((left for price, left in self._levels if self._within(price, limit)), ZERO)
        wanted = (min(quantity, available) / lot_size).to_integral_value(rounding=ROUND_FLOOR) * lot_size
        if wanted <= 0:
            return None
        levels, value, rest = [], ZERO, wanted
        for price, left in self._levels:
            if rest <= 0:
                break
            taken = min(left, rest)
            levels.append((price, taken))
            value += price * taken
            rest -= taken
        return Take(quantity=wanted, price=value / wanted, levels=tuple(levels))

    def take(self, take: Take) -> None:
        """Remove what `take` filled from the levels, for the next order of this pass."""
        rest = take.quantity
        for level in self._levels:
            taken = min(level[1], rest)
            level[1] -= taken
            rest -= taken
        self._levels = [level for level in self._levels if level[1] > 0]


class PassDepth:
    """The books of one pass (a placement, a batch, one account's matching pass), built from the prices' quotes
    on first use and shared by every order of the pass. `prices`: accounts.prices.Prices (a plain mapping of
    last prices has no quotes, so no books)."""

    def __init__(self, prices: Mapping | None):
        self._prices = prices
        self._books: dict[tuple[str, str, str], Book | None] = {}

    def marks(self) -> Mapping:
        """What the pass marks open shorts and resting orders at, (exchange, symbol) to price: the marks its prices
        carry (a placement's: what the account's funds mark, accounts.orders.place.last_prices), else its prices."""
        marks = getattr(self._prices, "marks", None)
        return marks() if callable(marks) else (self._prices or {})

    def quote_as_of(self, *, exchange: str, symbol: str):
        quote = self._quote(exchange, symbol)
        return None if quote is None else quote.as_of

    def _quote(self, exchange: str, symbol: str):
        quote_for = getattr(self._prices, "quote_for", None)
        return None if quote_for is None else quote_for((exchange, symbol))

    def shown_worst(self, *, exchange: str, symbol: str, side: str) -> Decimal | None:
        """The worst price the quote shows an order on `side` (the dearest ask, the cheapest bid), whatever this pass
        has taken: where a matching pass, which takes from the book anew, can fill that order's rest."""
        quote = self._quote(exchange, symbol)
        levels = () if quote is None else (quote.asks if side == Order.Side.BUY else quote.bids)
        return Book(levels, side=side).worst

    def book(self, *, exchange: str, symbol: str, side: str) -> Book | None:
        """The levels an order on `side` takes from (asks for a buy, bids for a sell); None without any."""
        key = (exchange, symbol, side)
        if key not in self._books:
            quote = self._quote(exchange, symbol)
            levels = () if quote is None else (quote.asks if side == Order.Side.BUY else quote.bids)
            self._books[key] = Book(levels, side=side) or None
        return self._books[key]
