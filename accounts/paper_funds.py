"""A paper account valued at market prices: its positions, and the marks its funds reserve resting orders at.

What REST shows (accounts.selectors: positions, holdings, funds) and what a socket starts from (accounts.pnl) are
read here, so that the two agree; a socket then values the same positions at each tick (`paper_position_at`,
`paper_funds_at`).
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Exists, OuterRef, Sum
from django.utils import timezone

from accounts.market_data import EXCHANGES
from accounts.models import OrderEvent, PaperPosition, TradingAccount
from accounts.paper_buying_power import RESTING_STATUSES
from accounts.paper_fills import FILL_KINDS
from accounts.prices import MarketDataUnavailable, Prices, price_source
from brokers.adapters.types import Funds, Position
from market.selectors import LastPrice, instrument_last_prices
from thor.money import CENT, ROUNDING

Instrument = tuple[str, str]  # (exchange, symbol)


@dataclass(frozen=True)
class PaperValuation:
    positions: list[tuple[PaperPosition, Decimal]]  # each with the price it is valued at
    source: str  # live | stale
    as_of: datetime  # when the oldest price used was quoted
    # The market price of each instrument the account holds (as its positions are valued; not the average price a
    # position without one is shown at) and, when asked for, of each its resting orders are on: what its funds
    # reserve those orders at (accounts.paper_buying_power), as the check does.
    marks: dict[Instrument, Decimal]


@dataclass(frozen=True)
class _Priced:
    price: Decimal
    as_of: datetime
    fresh: bool


def paper_valuation(account: TradingAccount, *, resting_orders: bool = False) -> PaperValuation:
    """The account's positions at market prices: `live` only when every price that matters is fresh.

    A position without a price is valued at its average price, as of its last fill, and the read says `stale`:
    a made-up price must never pass for a live one. A closed position's value does not depend on a price.

    `resting_orders`: the marks also hold the last prices of the instruments the resting orders are on, read in the
    same call, so that funds reserve a resting short sale at its mark as the pre-trade check does
    (accounts.orders.place.last_prices). An instrument not held is marked only at a fresh price, as the check takes
    only fresh ones (a held one at the market price its position is valued at, as before); one without is left out
    (its orders reserved at their own prices, as the check reserves them), and a quote service that can give no
    price at all fails no read that needs none for a position.
    """
    positions = list(account.paper_positions.all())
    held = {(p.exchange, p.symbol) for p in positions}
    ordered = _resting_instruments(account) - held if resting_orders else set()
    prices = _prices(account, held=held, ordered=ordered)
    # The market stream's price while it is fresh, or newer than the quote: what the account's sockets show
    # (accounts.pnl), so that REST and the socket agree; the quote when the stream has gone quiet.
    ticks = instrument_last_prices(held | ordered)
    now = timezone.now()
    valued, source, as_of = [], "live", now
    for position in positions:
        priced = _market_price((position.exchange, position.symbol), prices=prices, ticks=ticks, now=now)
        if priced is None:
            priced = _Priced(position.average_price, position.updated_at, fresh=False)
        valued.append((position, priced.price))
        if position.quantity:
            source = source if priced.fresh else "stale"
            as_of = min(as_of, priced.as_of)
    return PaperValuation(
        valued, source, as_of, _marks(held=held, ordered=ordered, prices=prices, ticks=ticks, now=now)
    )


def paper_marks(
    *, held: set[Instrument], ordered: set[Instrument], prices: Prices, ticks: dict | None = None
) -> dict[Instrument, Decimal]:
    """The marks a paper account's funds reckon its open shorts and resting orders at, from `prices` (the price
    source's, stale ones kept) and the market stream's last prices (`ticks`, read here unless given): what
    `paper_valuation` marks, for the pre-trade check (accounts.orders.place.last_prices) and the matching pass's fills
    (accounts.paper), so that the buying power they find is the one the funds show."""
    if ticks is None:
        ticks = instrument_last_prices(held | ordered)
    return _marks(held=held, ordered=ordered, prices=prices, ticks=ticks, now=timezone.now())


def _marks(*, held, ordered, prices: Prices, ticks, now) -> dict[Instrument, Decimal]:
    """A held instrument at its market price, stale or not (as its position is valued; one without a price has no
    mark: its short is tied up at its average price); an instrument only resting orders are on at a fresh price
    only (none: its orders are reserved at their own prices)."""
    marks = {}
    for instrument in held:
        priced = _market_price(instrument, prices=prices, ticks=ticks, now=now)
        if priced is not None:
            marks[instrument] = priced.price
    for instrument in ordered - held:
        priced = _market_price(instrument, prices=prices, ticks=ticks, now=now)
        if priced is not None and priced.fresh:
            marks[instrument] = priced.price
    return marks


def _resting_instruments(account: TradingAccount) -> set[Instrument]:
    resting = account.orders.filter(status__in=RESTING_STATUSES)
    return set(resting.values_list("exchange", "symbol").distinct())


def _prices(account: TradingAccount, *, held: set[Instrument], ordered: set[Instrument]) -> Prices:
    """One read of the price source for the positions' and the resting orders' instruments together."""
    try:
        return price_source(tenant=account.user.tenant).prices(held | ordered)
    except MarketDataUnavailable:
        # Raised only when none of them has a price: the positions' read fails as it did before the resting orders
        # were asked for; without positions, the orders are reserved at their own prices.
        if held:
            raise
        return Prices()


def _market_price(instrument: Instrument, *, prices: Prices, ticks: dict[Instrument, LastPrice], now) -> _Priced | None:
    tick = ticks.get(instrument)
    if tick is not None and (
        tick.is_fresh(now=now) or instrument not in prices or tick.as_of >= prices.as_of_for(instrument)
    ):
        return _Priced(tick.last_price, tick.as_of, tick.is_fresh(now=now))
    if instrument in prices:
        return _Priced(prices[instrument], prices.as_of_for(instrument), prices.is_fresh(instrument, now=now))
    return None


def paper_position_at(position: PaperPosition, last_price: Decimal) -> Position:
    """A paper position valued at `last_price`: for REST, and at each tick for the sockets (accounts.pnl). Its
    amounts are quantity x price x its multiplier (an MCX or currency contract's: brokers.contract_multipliers)."""
    multiplier = position.multiplier
    unrealised = ((last_price - position.average_price) * position.quantity * multiplier).quantize(
        CENT, rounding=ROUNDING
    )
    return Position(
        symbol=position.symbol,
        exchange=position.exchange,
        product=position.product,
        quantity=position.quantity,
        average_price=position.average_price,
        last_price=last_price,
        realised_pnl=position.realised_pnl,
        unrealised_pnl=unrealised,
        # Paper keeps no previous close: the day's P&L is everything since the position opened.
        day_pnl=position.realised_pnl + unrealised,
        value=(position.quantity * last_price * multiplier).quantize(CENT, rounding=ROUNDING),
    )


def paper_funds_at(*, account: TradingAccount, utilised: Decimal, valued, charges_today: Decimal) -> Funds:
    """A paper account's funds with `utilised` tied up and its positions valued as `valued` says ((position,
    price) pairs): for REST, and at each tick for the sockets (accounts.pnl)."""
    market_value = sum((p.quantity * price * p.multiplier for p, price in valued), Decimal("0"))
    available = account.cash - utilised
    return Funds(
        currency=account.currency,
        cash=account.cash,
        available=available,
        utilised=utilised,
        buying_power=available,
        net_liquidation=(account.cash + market_value).quantize(CENT, rounding=ROUNDING),
        charges_today=charges_today,
    )


def paper_charges_today(*, account: TradingAccount, now: datetime | None = None) -> Decimal:
    """The charges of the paper account's fills since midnight of its exchanges' day (IST for INR, New York for
    USD), slices counted each (a parent shows their sum)."""
    zone = next(rules.timezone for rules in EXCHANGES.values() if rules.currency == account.currency)
    day_start = (now or timezone.now()).astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    filled_today = OrderEvent.objects.filter(order=OuterRef("pk"), kind__in=FILL_KINDS, created_at__gte=day_start)
    total = (
        account.orders.filter(children__isnull=True, charges__isnull=False)
        .filter(Exists(filled_today))
        .aggregate(total=Sum("charges"))["total"]
    )
    return total or Decimal("0.00")
