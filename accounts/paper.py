"""The paper broker: fills against a price source, with cash and positions in the database.

Where the quote carries the book's depth, an order fills from it (accounts.paper_depth): a market order across
the levels as far as they go, a limit order at the levels within its limit once the book crosses it; the rest
stays OPEN for later matching passes (an IOC order's is cancelled). Without depth an order fills whole at the
last price (a market order plus slippage). What an account can afford is accounts.paper_buying_power; how a
fill is applied, accounts.paper_fills.

Every change to cash or positions happens with the TradingAccount row locked (accounts.account_locks), so
concurrent orders on one account are applied one at a time and their checks see each other.
"""

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.account_locks import account_lock
from accounts.market_data import contract_multiplier, instrument_get, unknown_multiplier_message
from accounts.models import Order, PaperPosition, TradingAccount
from accounts.paper_buying_power import (
    RESERVE_PRICE,
    RESTING_STATUSES,
    buyback_excess,
    closing_frees_room,
    margin_rate,
    paper_buying_power,
)
from accounts.paper_depth import PassDepth
from accounts.paper_fills import fill_apply, fill_charges_due, fill_cost, status_set
from accounts.paper_funds import paper_marks
from accounts.prices import MarketDataUnavailable, Prices, price_source
from accounts.slicing import parent_aggregate
from identity.models import Tenant
from market.selectors import instrument_last_prices
from thor.money import CENT, ROUNDING

logger = logging.getLogger("accounts.paper")

BPS = Decimal("10000")
# Orders that fill at the market once working: a market order, a stop-market once triggered.
MARKET_TYPES = ("MARKET", "SL-M")
# Kept in a paper order's `raw` (its paper broker's last word): the quote it last filled from.
BOOK_AS_OF = "book_as_of"


def to_tick(value: Decimal, *, tick: Decimal, side: str) -> Decimal:
    """`value` on the tick grid, rounded against the trader (up for a buy, down for a sell)."""
    rounding = ROUND_CEILING if side == Order.Side.BUY else ROUND_FLOOR
    return (value / tick).to_integral_value(rounding=rounding) * tick


def market_fill_price(*, last_price: Decimal, side: str, exchange: str, symbol: str) -> Decimal:
    instrument = instrument_get(exchange=exchange, symbol=symbol)
    slippage = Decimal(str(settings.THOR_PAPER_SLIPPAGE_BPS)) / BPS
    factor = 1 + slippage if side == Order.Side.BUY else 1 - slippage
    return to_tick(last_price * factor, tick=instrument.tick_size, side=side)


def _unfilled(order: Order) -> Decimal:
    return order.quantity - order.filled_quantity


def _fill(
    *,
    account: TradingAccount,
    order: Order,
    quantity: Decimal,
    price: Decimal,
    depth: PassDepth,
    actor=None,
    details=None,
) -> bool:
    """Fill `quantity` more of the order at `price`, if the account can pay for it; False when it was refused
    (an order with nothing filled yet is REJECTED, one partly filled has its rest CANCELLED).

    Open shorts are marked at the pass's last prices (`depth`), as the pre-trade check marked them: marked at
    this fill's own price instead, a buy walking up the asks above the last price would make the short it buys
    back look dearer than the check saw, and be refused for funds the check had found. An instrument the pass
    has no price for is marked at this fill's price (its own) or at its average (another's)."""
    position, _ = PaperPosition.objects.get_or_create(
        account=account, exchange=order.exchange, symbol=order.symbol, product=order.product
    )
    if not position.quantity:
        # A position opens on its contract's terms and keeps them (an MCX lot is 100 price units of GOLD).
        multiplier = contract_multiplier(exchange=order.exchange, symbol=order.symbol)
        if multiplier is None:
            _refuse(order=order, message=unknown_multiplier_message(order.exchange, order.symbol), actor=actor)
            return False
        position.multiplier = multiplier
    multiplier = position.multiplier
    charges = fill_charges_due(account=account, order=order, quantity=quantity, price=price, multiplier=multiplier)
    if order.side == Order.Side.BUY:
        # Short proceeds sit in cash but are owed back: a buy is paid from buying power (beyond what it covers,
        # and what buying back costs above what the short's exposure holds for it), its charges as well. The
        # order's own reservation is freed for it.
        opening = max(quantity - max(-position.quantity, Decimal("0")), Decimal("0"))
        marks = {(order.exchange, order.symbol): price, **depth.marks()}
        rate = margin_rate(tenant=account.user.tenant, product=order.product)
        excess = buyback_excess(
            quantity=quantity - opening, price=price, mark=marks[(order.exchange, order.symbol)], rate=rate
        )
        needed = ((opening * price + excess) * multiplier).quantize(CENT, rounding=ROUNDING) + charges.total
        available = paper_buying_power(account=account, marks=marks, exclude_order_id=order.pk)
        cost = fill_cost(quantity=quantity, price=price, multiplier=multiplier)
        # A fill that only buys back a short and frees at least what it costs passes whatever the buying power
        # (accounts.paper_buying_power: a short that went against the trader can be closed); never beyond the cash.
        closing = not opening and closing_frees_room(
            quantity=quantity,
            price=price,
            mark=marks[(order.exchange, order.symbol)],
            rate=rate,
            multiplier=multiplier,
            charges=charges.total,
        )
        if (needed > available and not closing) or cost + charges.total > account.cash:
            _refuse(
                order=order, message=f"Insufficient funds at fill: needs {needed}, available {available}.", actor=actor
            )
            return False
    if order.side == Order.Side.SELL and order.product == "CNC" and position.quantity < quantity:
        _refuse(order=order, message=f"Insufficient CNC position at fill: {position.quantity} held.", actor=actor)
        return False
    fill_apply(
        account=account,
        order=order,
        position=position,
        price=price,
        charges=charges,
        quantity=quantity,
        actor=actor,
        details=details,
    )
    return True


def _reject(*, order: Order, message: str, actor=None) -> None:
    _set_status(order=order, status=Order.Status.REJECTED, message=message, kind="rejected", actor=actor)


def _refuse(*, order: Order, message: str, actor=None) -> None:
    """A fill the account cannot take: nothing filled yet, the order is rejected; partly filled, its rest is
    cancelled (Kite's word for an order that ended with part of it unfilled; the fills stay)."""
    if not order.filled_quantity:
        _reject(order=order, message=message, actor=actor)
        return
    _set_status(
        order=order, status=Order.Status.CANCELLED, message=f"Rest cancelled: {message}", kind="cancelled", actor=actor
    )


_set_status = status_set


def _book_fill(*, account: TradingAccount, order: Order, depth: PassDepth, limit: Decimal | None, actor) -> bool:
    """Fill what the quote's book gives the order (within `limit`, if any) at the levels' average, on the tick
    against the trader; False when there is no book to fill from (the caller fills at the last price).

    A quote fills an order once: a later pass fills its rest only from a newer quote."""
    book = depth.book(exchange=order.exchange, symbol=order.symbol, side=order.side)
    if book is None:
        return False
    as_of = depth.quote_as_of(exchange=order.exchange, symbol=order.symbol)
    if as_of is not None and order.raw.get(BOOK_AS_OF) == as_of.isoformat():
        return True
    instrument = instrument_get(exchange=order.exchange, symbol=order.symbol)
    take = book.peek(quantity=_unfilled(order), lot=instrument.lot_size, limit=limit)
    if take is None:
        return True
    price = to_tick(take.price, tick=instrument.tick_size, side=order.side)
    if limit is not None:
        # Levels off the tick grid (a hostile quote) never round a fill past its limit.
        price = min(price, limit) if order.side == Order.Side.BUY else max(price, limit)
    if as_of is not None:
        order.raw = {**order.raw, BOOK_AS_OF: as_of.isoformat()}
    levels = [{"price": str(level_price), "quantity": str(taken)} for level_price, taken in take.levels]
    filled = _fill(
        account=account,
        order=order,
        quantity=take.quantity,
        price=price,
        depth=depth,
        actor=actor,
        details={"depth": levels},
    )
    if filled:
        book.take(take)
    return True


def _market_fill(*, account: TradingAccount, order: Order, last_price: Decimal, depth: PassDepth, actor) -> None:
    """A market order (or a triggered stop-market) fills across the book's levels; without a book, all of it at
    the last price plus slippage."""
    if _book_fill(account=account, order=order, depth=depth, limit=None, actor=actor):
        return
    price = market_fill_price(last_price=last_price, side=order.side, exchange=order.exchange, symbol=order.symbol)
    _fill(account=account, order=order, quantity=_unfilled(order), price=price, depth=depth, actor=actor)


def _advance(
    *, account: TradingAccount, order: Order, last_price: Decimal, depth: PassDepth | None = None, actor=None
) -> None:
    """Move a resting order along at `last_price` and its quote's book: trigger it, fill it, or leave it."""
    depth = depth or PassDepth(None)
    if order.status == Order.Status.TRIGGER_PENDING:
        rising = order.side == Order.Side.BUY
        if (last_price < order.trigger_price) if rising else (last_price > order.trigger_price):
            return
        if order.order_type != "SL-M":
            _set_status(order=order, status=Order.Status.OPEN, kind="triggered", actor=actor)
    if order.order_type in MARKET_TYPES:
        _market_fill(account=account, order=order, last_price=last_price, depth=depth, actor=actor)
        if order.status == Order.Status.TRIGGER_PENDING:
            # Triggered, but the book had nothing for it yet: it works at the market from now on.
            _set_status(order=order, status=Order.Status.OPEN, kind="triggered", actor=actor)
        if order.order_type == "SL-M" and order.status in RESTING_STATUSES and RESERVE_PRICE not in order.raw:
            # Triggered, it rests at the market: reserved at its trigger it would fill at the book's dearer levels,
            # as its check valued it, on room nobody kept for it.
            order.raw = {
                **order.raw,
                RESERVE_PRICE: str(_rest_reserve(order=order, last_price=last_price, depth=depth)),
            }
            order.save(update_fields=["raw"])
        return
    if _book_fill(account=account, order=order, depth=depth, limit=order.price, actor=actor):
        return
    crosses = last_price <= order.price if order.side == Order.Side.BUY else last_price >= order.price
    if crosses:
        _fill(account=account, order=order, quantity=_unfilled(order), price=last_price, depth=depth, actor=actor)


def _rest_reserve(*, order: Order, last_price: Decimal, depth: PassDepth) -> Decimal:
    """What the rest of a market-type order working at the market reserves (it has no limit to reserve at): the
    last price with slippage, or the worst level its quote's book shows (before this pass took from it: the next
    pass takes from the whole book again) or what it filled at so far where that is worse: dearer for a buy (its
    cost), cheaper for a sell (accounts.paper_buying_power reserves what a short sold below the mark loses at once
    down to this price)."""
    reserve = market_fill_price(last_price=last_price, side=order.side, exchange=order.exchange, symbol=order.symbol)
    shown = depth.shown_worst(exchange=order.exchange, symbol=order.symbol, side=order.side)
    worse = [price for price in (shown, order.average_price) if price is not None]
    return max([reserve, *worse]) if order.side == Order.Side.BUY else min([reserve, *worse])


def paper_order_submit(
    *,
    account: TradingAccount,
    order: Order,
    last_price: Decimal | None,
    depth: PassDepth | None = None,
    actor=None,
) -> None:
    """A new (or modified) order on the locked account: fill it now (as far as the book goes) or let it rest.

    `depth`: the books of this placement's quotes (shared by its slices, a batch's legs)."""
    depth = depth or PassDepth(None)
    if order.order_type == "MARKET":
        if last_price is None:
            _reject(order=order, message="No market price available.", actor=actor)
            return
        _market_fill(account=account, order=order, last_price=last_price, depth=depth, actor=actor)
    else:
        resting_status = Order.Status.TRIGGER_PENDING if order.order_type in ("SL", "SL-M") else Order.Status.OPEN
        if order.status != resting_status:
            _set_status(order=order, status=resting_status, kind="accepted", actor=actor)
        if last_price is not None:
            _advance(account=account, order=order, last_price=last_price, depth=depth, actor=actor)
    if order.status == Order.Status.PENDING:
        # A market order the book had not one lot for: it rests, as an exchange keeps it, for the next quotes,
        # reserving what it would cost as the pre-trade check valued it (a market order has no limit to reserve
        # at): the last price with slippage, or the worst level its book shows if that is dearer for a buy.
        if last_price is not None:
            order.raw = {
                **order.raw,
                RESERVE_PRICE: str(_rest_reserve(order=order, last_price=last_price, depth=depth)),
            }
        _set_status(order=order, status=Order.Status.OPEN, kind="accepted", actor=actor)
    if order.validity == "IOC" and order.status in RESTING_STATUSES:
        message = "IOC order not filled." if not order.filled_quantity else "IOC order: the rest not filled."
        _set_status(order=order, status=Order.Status.CANCELLED, message=message, kind="expired")


def paper_order_cancel(*, order: Order, actor=None) -> None:
    """Cancel an open order; a sliced order's parent cancels each slice still open (the filled ones stay)."""
    children = list(order.children.filter(status__in=(*RESTING_STATUSES, Order.Status.PENDING)).order_by("id"))
    if not children and not order.children.exists():
        _set_status(order=order, status=Order.Status.CANCELLED, kind="cancelled", actor=actor)
        return
    for child in children:
        _set_status(order=child, status=Order.Status.CANCELLED, kind="cancelled", actor=actor)
    order.refresh_from_db()
    parent_aggregate(parent=order, actor=actor)


def session_end_for(*, order: Order) -> datetime:
    """When a DAY order placed at `order.created_at` expires: that session's close, or the next one."""
    rules = instrument_get(exchange=order.exchange, symbol=order.symbol).rules
    placed = order.created_at.astimezone(rules.timezone)
    end = datetime.combine(placed.date(), rules.session_end, tzinfo=rules.timezone)
    return end if placed < end else end + timedelta(days=1)


def paper_orders_match(*, account_id: int | None = None, now: datetime | None = None) -> int:
    """Expire DAY orders past their session and fill resting orders the price has crossed.

    Every paper account, or only `account_id`. Returns how many orders changed state or filled further. Prices
    are read before any lock is taken.
    """
    now = now or timezone.now()
    resting = Order.objects.filter(
        account__mode=TradingAccount.Mode.PAPER, status__in=RESTING_STATUSES, children__isnull=True
    )
    if account_id is not None:
        resting = resting.filter(account_id=account_id)
    # Each tenant's prices come through its own source: a broker session is never shared across tenants.
    instruments_by_tenant = defaultdict(set)
    orders_by_account = defaultdict(list)
    ordered_by_account = defaultdict(set)
    for order_id, resting_account_id, tenant_id, exchange, symbol in resting.values_list(
        "id", "account_id", "account__user__tenant_id", "exchange", "symbol"
    ):
        instruments_by_tenant[tenant_id].add((exchange, symbol))
        orders_by_account[resting_account_id].append(order_id)
        ordered_by_account[resting_account_id].add((exchange, symbol))
    held_by_account = defaultdict(set)
    if orders_by_account:
        # A buy's fill marks the account's shorts at the pass's marks, as its pre-trade check did (`_fill`).
        # Closed positions too: their instruments are held as the funds see them (a stale price marks them).
        held = PaperPosition.objects.filter(account_id__in=orders_by_account)
        for held_account_id, tenant_id, exchange, symbol, quantity in held.values_list(
            "account_id", "account__user__tenant_id", "exchange", "symbol", "quantity"
        ):
            held_by_account[held_account_id].add((exchange, symbol))
            if quantity < 0:
                instruments_by_tenant[tenant_id].add((exchange, symbol))
    quoted_by_tenant = {
        tenant.pk: _tenant_prices(tenant=tenant, instruments=instruments_by_tenant[tenant.pk])
        for tenant in Tenant.objects.filter(pk__in=instruments_by_tenant)
    }
    streamed_by_tenant = {
        tenant_id: instrument_last_prices(instruments) for tenant_id, instruments in instruments_by_tenant.items()
    }
    changed = 0
    for resting_account_id, order_ids in orders_by_account.items():
        with transaction.atomic():
            account = account_lock(account_id=resting_account_id, live=False)
            tenant_id = account.user.tenant_id
            quoted = quoted_by_tenant[tenant_id]
            prices = quoted.fresh()
            # Fills at fresh prices; the account's shorts and resting orders marked as its funds and its pre-trade
            # check mark them (accounts.paper_funds.paper_marks). The account's orders on one instrument share its
            # book: a level one fills is gone for the next.
            marks = paper_marks(
                held=held_by_account[resting_account_id],
                ordered=ordered_by_account[resting_account_id],
                prices=quoted,
                ticks=streamed_by_tenant[tenant_id],
            )
            depth = PassDepth(prices.with_marks(marks))
            for order in account.orders.filter(
                pk__in=order_ids, status__in=RESTING_STATUSES, children__isnull=True
            ).order_by("id"):
                before = (order.status, order.filled_quantity)
                if order.validity == "DAY" and now >= session_end_for(order=order):
                    _set_status(order=order, status=Order.Status.EXPIRED, message="Session ended.", kind="expired")
                elif (order.exchange, order.symbol) in prices:
                    _advance(
                        account=account, order=order, last_price=prices[(order.exchange, order.symbol)], depth=depth
                    )
                changed += (order.status, order.filled_quantity) != before
    return changed


def _tenant_prices(*, tenant, instruments) -> Prices:
    """The tenant's prices of these instruments, stale ones too (they mark a held short as its funds do; only the
    fresh ones fill)."""
    try:
        return price_source(tenant=tenant).prices(instruments)
    except MarketDataUnavailable:
        # Expiry needs no price; fills wait until the source answers again.
        return Prices()
