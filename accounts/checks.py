"""Pre-trade checks shared by every broker: each failure names the field it is about."""

import copy
from collections.abc import Iterator, Sequence
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework import status

from accounts.market_data import (
    EXCHANGES,
    Instrument,
    contract_multiplier,
    instrument_get,
    unknown_multiplier_message,
)
from accounts.models import Order, TradingAccount
from accounts.paper import MARKET_TYPES, market_fill_price, to_tick
from accounts.paper_depth import Book
from accounts.slicing import freeze_slices
from brokers.adapters.types import OrderRequest
from brokers.egress import order_egress_require
from brokers.services import connection_require_active
from thor.errors import ApplicationError

OPEN_STATUSES = (Order.Status.PENDING, Order.Status.OPEN, Order.Status.TRIGGER_PENDING)
# What counts against a tenant's max open orders: an unconfirmed placement may well be open.
MAYBE_OPEN_STATUSES = (*OPEN_STATUSES, Order.Status.UNKNOWN)


def trading_enabled_check(*, account: TradingAccount) -> None:
    """The kill switches (the tenant's and the live connection's), the live session, then the order egress
    a live Kite order must leave through (static-IP rule, brokers.egress).

    Run before any order row is written: an order refused here leaves nothing behind, so its
    Idempotency-Key stays free and a retry is checked afresh.
    """
    if not account.user.tenant.trading_enabled:
        raise ApplicationError(
            "Trading is disabled for this tenant.", code="trading_disabled", status_code=status.HTTP_403_FORBIDDEN
        )
    if account.mode != TradingAccount.Mode.LIVE:
        return
    if not (account.connection and account.connection.trading_enabled):
        raise ApplicationError(
            "Trading is disabled on this broker connection.",
            code="trading_disabled",
            status_code=status.HTTP_403_FORBIDDEN,
        )
    connection_require_active(account.connection)
    order_egress_check(account=account)


def order_egress_check(*, account: TradingAccount) -> None:
    """A live Kite order call needs the egress it must leave through where the tenant requires one (403
    static_ip_required, before anything is written or sent). Cancels run it too: the kill switches let a
    cancel through, but Kite refuses one from another address all the same."""
    if account.mode == TradingAccount.Mode.LIVE and account.connection is not None:
        order_egress_require(account.connection, tenant=account.user.tenant)


def _on_tick(value: Decimal, tick: Decimal) -> bool:
    return value % tick == 0


def active_user_check(user) -> None:
    """The user of the locked account is still active: authentication may have taken them from its short
    cache (identity.authentication, `user_checked_under_lock`), which a change made behind its back (a
    bulk update) reaches only when it expires."""
    if not user.is_active:
        raise ApplicationError("User is inactive", code="user_inactive", status_code=status.HTTP_401_UNAUTHORIZED)


def order_request_check(
    *, request: OrderRequest, sliceable: bool = False, account: TradingAccount | None = None
) -> Instrument:
    """What can be checked from the order alone: exchange, instrument (listed, tradable, not expired),
    product, type, lot and tick sizes, the exchange's freeze quantity.

    `sliceable`: the order may be placed as slices (accounts.slicing: a new paper order), so it may carry up
    to MAX_SLICES freeze quantities; otherwise (a batch leg, a modify, a live order its broker does not slice)
    at most one.
    `account`: a new order's, for a paper account's US symbol the master lacks, looked up at Schwab (a broker
    call: never under the account's lock)."""
    instrument = instrument_get(exchange=request.exchange, symbol=request.symbol, account=account)
    if instrument is None:
        field, message = (
            ("tradingsymbol", f"Unknown instrument {request.exchange}:{request.symbol}.")
            if request.exchange in EXCHANGES
            else ("exchange", f"Unknown exchange {request.exchange!r}.")
        )
        raise ValidationError({field: [message]})
    name = f"{request.exchange}:{request.symbol}"
    if not instrument.tradable:
        raise ValidationError({"tradingsymbol": [f"{name} is an index: it has a price but cannot be traded."]})
    if instrument.expired_at(timezone.now()):
        expiry = f" on {instrument.expiry.isoformat()}" if instrument.expiry else ""
        raise ValidationError({"tradingsymbol": [f"{name} expired{expiry}: it can no longer be traded."]})
    rules = instrument.rules
    errors: dict[str, list[str]] = {}
    if request.product not in rules.products:
        errors["product"] = [
            f"{request.product} is not allowed on {request.exchange}: use {', '.join(rules.products)}."
        ]
    if request.order_type not in rules.order_types:
        errors["order_type"] = [
            f"{request.order_type} is not allowed on {request.exchange}: use {', '.join(rules.order_types)}."
        ]
    if request.validity not in rules.validities:
        errors["validity"] = [
            f"{request.validity} is not allowed on {request.exchange}: use {', '.join(rules.validities)}."
        ]
    if request.quantity <= 0 or request.quantity % instrument.lot_size != 0:
        errors["quantity"] = [f"Must be a positive multiple of the lot size {instrument.lot_size}."]
    elif sliceable:
        try:
            freeze_slices(instrument=instrument, quantity=request.quantity)
        except ValidationError as error:
            errors.update(error.message_dict)
    elif instrument.freeze_quantity is not None and request.quantity > instrument.freeze_quantity:
        # Sliced only when new, on paper or by a broker that slices (Kite autoslice: accounts.autoslice).
        errors["quantity"] = [
            f"Above the exchange's freeze quantity {instrument.freeze_quantity} for {name}: "
            f"place at most {instrument.freeze_quantity} an order."
        ]
    needs_price = request.order_type in ("LIMIT", "SL")
    if needs_price and request.price is None:
        errors["price"] = [f"Required for {request.order_type} orders."]
    elif not needs_price and request.price is not None:
        errors["price"] = [f"Not allowed for {request.order_type} orders."]
    elif request.price is not None and not _on_tick(request.price, instrument.tick_size):
        errors["price"] = [f"Must be a multiple of the tick size {instrument.tick_size}."]
    needs_trigger = request.order_type in ("SL", "SL-M")
    if needs_trigger and request.trigger_price is None:
        errors["trigger_price"] = [f"Required for {request.order_type} orders."]
    elif not needs_trigger and request.trigger_price is not None:
        errors["trigger_price"] = [f"Not allowed for {request.order_type} orders."]
    elif request.trigger_price is not None and not _on_tick(request.trigger_price, instrument.tick_size):
        errors["trigger_price"] = [f"Must be a multiple of the tick size {instrument.tick_size}."]
    if errors:
        raise ValidationError(errors)
    return instrument


def order_algo_id(*, tenant, requested: str | None) -> str:
    """The exchange algo id an order carries: the one it names, which must be one of the tenant's
    `algo_ids`, else the tenant's first (none when it has none). A 400 on `algo_id` otherwise."""
    if not requested:
        return tenant.default_algo_id
    if requested not in tenant.algo_ids:
        registered = (
            f"use one of {', '.join(tenant.algo_ids)}" if tenant.algo_ids else "it has none (its admin sets them)"
        )
        raise ValidationError({"algo_id": [f"{requested!r} is not one of this tenant's algo ids: {registered}."]})
    return requested


def currency_check(*, account: TradingAccount, request: OrderRequest) -> None:
    """A paper account holds one currency: an instrument priced in another is refused, naming both."""
    currency = EXCHANGES[request.exchange].currency
    if account.mode == TradingAccount.Mode.PAPER and currency != account.currency:
        raise ValidationError(
            {
                "exchange": [
                    f"{request.exchange} trades in {currency}; this paper account is in {account.currency}. "
                    f"Trade it from a paper account in {currency} (POST /api/accounts opens one)."
                ]
            }
        )


def contract_size_check(*, account: TradingAccount, request: OrderRequest) -> None:
    """A paper account values an order and its position at quantity x price x the contract's multiplier
    (brokers.contract_multipliers): a contract whose multiplier Thor does not know is refused, naming it."""
    if (
        account.mode == TradingAccount.Mode.PAPER
        and contract_multiplier(exchange=request.exchange, symbol=request.symbol) is None
    ):
        raise ValidationError({"tradingsymbol": [unknown_multiplier_message(request.exchange, request.symbol)]})


def book_value_price(
    *, request: OrderRequest, book: Book, quantities: Sequence[Decimal], limit: Decimal | None = None
) -> Decimal:
    """What an order for `quantities` (its slices, in turn; one for an unsliced order) costs a share walking
    `book` as the paper engine fills it (accounts.paper._book_fill): each slice in whole lots at its levels'
    quantity-weighted average, on the tick against the trader (never past `limit`), then gone for the next slice.
    What the book does not give it waits for a later quote: a market order's at the worst level the book shows, a
    limit order's (`limit`: only the levels within it fill) at its limit, at which it rests reserving. The total
    over the quantity, on the tick against the trader again: that price times the quantity is never below what
    the fills cost, so a check on it never passes an order the fill would refuse for their price (their charges,
    which the fill adds, the pre-trade check adds too: paper_buying_power_check). `book` itself is left
    untouched."""
    instrument = instrument_get(exchange=request.exchange, symbol=request.symbol)
    rest_price = book.worst if limit is None else limit
    if rest_price is None:
        raise ValueError("an empty book has no value")
    cost = Decimal("0")
    for quantity, taken, price in _slice_fills(request=request, book=book, quantities=quantities, limit=limit):
        cost += taken * price + (quantity - taken) * rest_price
    return to_tick(cost / sum(quantities), tick=instrument.tick_size, side=request.side)


def _slice_fills(
    *, request: OrderRequest, book: Book, quantities: Sequence[Decimal], limit: Decimal | None
) -> Iterator[tuple[Decimal, Decimal, Decimal]]:
    """Each slice of the order walking a scratch copy of `book` (the pass's own is left untouched) as the paper
    engine fills it (accounts.paper._book_fill): (its quantity, what the book gives it in whole lots, at what
    price a share): its levels' quantity-weighted average on the tick against the trader, never past `limit`;
    what one slice takes is gone for the next. A slice the book gives nothing to: taken 0 at price 0."""
    instrument = instrument_get(exchange=request.exchange, symbol=request.symbol)
    buying = request.side == Order.Side.BUY
    scratch = copy.deepcopy(book)
    for quantity in quantities:
        take = scratch.peek(quantity=quantity, lot=instrument.lot_size, limit=limit)
        if take is None:
            yield quantity, Decimal("0"), Decimal("0")
            continue
        price = to_tick(take.price, tick=instrument.tick_size, side=request.side)
        if limit is not None:
            # As the fill: levels off the tick grid never round a price past the limit.
            price = min(price, limit) if buying else max(price, limit)
        scratch.take(take)
        yield quantity, take.quantity, price


def _marketable(*, request: OrderRequest, book: Book | None) -> bool:
    """A limit order the book crosses as it is placed (a buy's limit at or above the best ask, a sell's at or
    below the best bid): it fills from the book at once, as far as its levels within the limit go."""
    if request.order_type != "LIMIT" or not book or book.best is None or request.price is None:
        return False
    return request.price >= book.best if request.side == Order.Side.BUY else request.price <= book.best


def order_value_price(
    *,
    request: OrderRequest,
    last_price: Decimal | None,
    book: Book | None = None,
    quantities: Sequence[Decimal] | None = None,
) -> Decimal | None:
    """The price the order can fill at, which buying power and the tenant's limits are checked on.

    A marketable limit fills at the market, not at its limit: valued at its limit, a sell at 0.05 would
    short a fortune for nothing. A buy never fills above its limit, a sell never below it; market and
    stop-market orders fill at the market (with the paper slippage). None when the market price is
    needed and unknown.

    `book`: a paper order's side of its quote's depth (the asks for a buy, the bids for a sell), which a
    market-type order fills from; `quantities` what of the order fills from it (its slices; by default its
    quantity). Its market is then the higher of the last price with slippage and walking the book
    (`book_value_price`): a buy larger than the best ask fills at a worse average than the last price, and
    valued below it would pass the pre-trade check only to be refused at fill. A sell walks the bids down,
    which is mostly below the last price: it keeps the higher of the two as well, since the higher price is the
    conservative one for both checks on it (a short's margin is its quantity times this price times the
    margin rate, paper_buying_power_check; the tenant's max order value is quantity times price). Without a
    book (no quote, no depth on that side), exactly the last price with slippage.

    A limit buy with a book that does not cross it (its limit below the best ask) fills from that book alone too,
    not at the last price: it rests, reserving its limit (accounts.paper_buying_power), and is valued at its limit.
    Valued at a last price below its limit, it would pass with a reservation the account cannot cover, and be
    refused at its fill for funds (or starve the account's other orders). Without a book a limit buy at or above
    the last price fills whole at the last price at once: valued there.

    A marketable limit order with a book fills from it alone (accounts.paper._advance), across the levels
    within its limit, and what they do not give it rests at its limit. A buy is valued at that walk (levels
    within the limit at their average, the rest at the limit), never above the limit: valued at the last price
    instead, a buy walking up the asks past it would pass and then be refused at fill. A sell keeps the highest
    of its limit, the last price and the walk down the bids within its limit, the conservative price for its
    margin and the max order value, as a market sell does.

    A live order gets no book (accounts.orders.place.pre_trade_check): it fills at the exchange against the
    book its order meets there, not the paper price source's snapshot of it, and its funds are the broker's
    to check; its value only meets the tenant's max order value, on the last price as before.
    """
    market = (
        None
        if last_price is None
        else market_fill_price(
            last_price=last_price, side=request.side, exchange=request.exchange, symbol=request.symbol
        )
    )
    quantities = quantities or (request.quantity,)
    if market is not None and book and request.order_type in MARKET_TYPES:
        walked = book_value_price(request=request, book=book, quantities=quantities)
        market = max(market, walked)
    buying = request.side == Order.Side.BUY
    if request.order_type == "MARKET":
        return market
    if request.order_type == "SL-M":
        known = [price for price in (request.trigger_price, market) if price is not None]
        return max(known) if buying or market is not None else None
    within = None
    if book is not None and _marketable(request=request, book=book):
        within = book_value_price(request=request, book=book, quantities=quantities, limit=request.price)
    if buying:
        if within is not None:
            return min(request.price, within)
        # A stop-limit buy may trigger later and fill anywhere up to its limit. A limit buy the book does not cross
        # rests at its limit and reserves there (its book is there, even if an earlier leg of the pass emptied it:
        # the engine fills only from it, never at the last price).
        if last_price is None or request.order_type == "SL" or book is not None:
            return request.price
        return min(request.price, last_price)
    if last_price is None:
        return None
    return max(request.price, last_price, within or request.price)


def sell_fill_floor(
    *,
    request: OrderRequest,
    last_price: Decimal | None,
    book: Book | None = None,
    quantities: Sequence[Decimal] | None = None,
) -> Decimal | None:
    """The lowest price a sell can fill at, as the paper engine fills it (accounts.paper): each slice of a
    marketable order walks `book` at its levels' average, on the tick against the trader (never below its limit);
    what the book does not give a limit sell rests at its limit, a market sell's at the last price with slippage
    (as without a book). A limit sell the book does not cross rests at its limit; without a book, one at or below
    the last price fills at the last price; a stop-limit sell never fills below its limit. A stop-market sell fills
    at the market, as a market sell, once it triggers: no higher than its trigger with slippage either (it rests
    reserving at its trigger until then).

    What a short filled below the mark loses at once, (mark - this price) x what it shorts, is what the check asks
    of it besides its margin and charges (accounts.paper_buying_power). None when the last price is unknown."""
    if last_price is None:
        return None
    market = market_fill_price(
        last_price=last_price, side=request.side, exchange=request.exchange, symbol=request.symbol
    )
    if request.order_type == "SL":
        return request.price
    if request.order_type in MARKET_TYPES:
        walked = _lowest_walk(request=request, book=book, quantities=quantities or (request.quantity,), limit=None)
        floor = market if walked is None else min(market, walked)
        if request.order_type == "SL-M" and request.trigger_price is not None:
            triggered = market_fill_price(
                last_price=request.trigger_price, side=request.side, exchange=request.exchange, symbol=request.symbol
            )
            floor = min(floor, triggered)
        return floor
    if book is not None and _marketable(request=request, book=book):
        walked = _lowest_walk(
            request=request, book=book, quantities=quantities or (request.quantity,), limit=request.price
        )
        return request.price if walked is None else walked
    if request.price is None:  # a limit order without its limit is refused before it is valued
        return market
    if book is None and request.price <= last_price:
        return last_price
    return request.price


def _lowest_walk(
    *, request: OrderRequest, book: Book | None, quantities: Sequence[Decimal], limit: Decimal | None
) -> Decimal | None:
    """The lowest of the prices the slices of a sell fill at walking `book`, and of `limit` where part of it rests
    there; None when the book gives it nothing and it has no limit to rest at."""
    if not book:
        return limit
    prices: list[Decimal] = []
    for quantity, taken, price in _slice_fills(request=request, book=book, quantities=quantities, limit=limit):
        if taken < quantity and limit is not None:
            prices.append(limit)
        if taken:
            prices.append(price)
    return min(prices) if prices else None


def tenant_limits_check(
    *, account: TradingAccount, request: OrderRequest, price: Decimal | None, replacing: Order | None = None
) -> None:
    """The tenant's max order value and max open orders, on the locked account."""
    tenant = account.user.tenant
    if tenant.max_order_value is not None:
        if price is None:
            raise ValidationError({"tradingsymbol": ["No market price available to value this order."]})
        multiplier = contract_multiplier(exchange=request.exchange, symbol=request.symbol)
        if multiplier is None:
            paper = account.mode == TradingAccount.Mode.PAPER
            message = unknown_multiplier_message(request.exchange, request.symbol, paper=paper)
            raise ValidationError({"tradingsymbol": [message]})
        value = request.quantity * price * multiplier
        if value > tenant.max_order_value:
            raise ValidationError(
                {"quantity": [f"Order value {value:.2f} exceeds the limit of {tenant.max_order_value}."]}
            )
    if tenant.max_open_orders is not None and replacing is None:
        # A sliced order counts once, as the trader placed it (its parent), not once per slice.
        open_orders = Order.objects.filter(
            account__user=account.user, status__in=MAYBE_OPEN_STATUSES, parent__isnull=True
        ).count()
        if open_orders >= tenant.max_open_orders:
            raise ValidationError(
                {"non_field_errors": [f"At most {tenant.max_open_orders} open orders are allowed; cancel one first."]}
            )
