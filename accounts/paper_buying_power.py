"""What a paper account can afford: cash less what its resting orders reserve (for the part of each not filled
yet, a buy's charges with its cost) and what its open shorts tie up, and the pre-trade check of an order against
it. Run on the locked account (accounts.paper.account_lock), so concurrent orders see each other's reservations.
"""

from collections import defaultdict
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import F, Sum

from accounts.charges import charges_enabled
from accounts.market_data import instrument_get
from accounts.models import Order, TradingAccount
from accounts.paper_fills import fill_charges_due, order_charges
from thor.money import CENT, ROUNDING

RESTING_STATUSES = (Order.Status.OPEN, Order.Status.TRIGGER_PENDING)


def margin_rate(*, tenant, product: str) -> Decimal:
    """The share of a short's value held as margin for this product (tenant setting, else the default)."""
    rates = tenant.paper_margin_rates or {}
    return Decimal(str(rates.get(product, settings.THOR_PAPER_DEFAULT_MARGIN_RATE)))


def _resting_orders(account: TradingAccount, *, exclude_order_id: int | None):
    # A sliced order's parent only shows its children's aggregate: the children rest, reserve and fill.
    return account.orders.filter(status__in=RESTING_STATUSES, children__isnull=True).exclude(pk=exclude_order_id)


# A market order that rests (its book had not one lot for it) has no limit to reserve at: the paper engine
# keeps the price it would fill at with the last price (plus slippage) on the order, under this key of `raw`.
RESERVE_PRICE = "reserve_price"


def _order_price(order) -> Decimal:
    # A market order resting with part of it filled (the book had no more) is reserved at what it filled at so far;
    # one with nothing filled yet at the price kept when it came to rest.
    return order.price or order.trigger_price or order.average_price or Decimal(order.raw.get(RESERVE_PRICE) or "0")


def _resting_buy_charges(*, account: TradingAccount, order, price: Decimal, instrument_types: dict) -> Decimal:
    """What the unfilled rest of a resting buy debits in charges when it fills at `price` (what the order's fills
    so far and its rest cost together as one executed order, less what those fills paid: accounts.paper_fills).
    `instrument_types`: the call's lookups, per (exchange, symbol), so each instrument is looked up once."""
    key = (order.exchange, order.symbol)
    if key not in instrument_types:
        instrument = instrument_get(exchange=order.exchange, symbol=order.symbol)
        instrument_types[key] = instrument.instrument_type if instrument else ""
    return fill_charges_due(
        account=account,
        order=order,
        quantity=order.quantity - order.filled_quantity,
        price=price,
        instrument_type=instrument_types[key],
    ).total


def reserved_cash(*, account: TradingAccount, exclude_order_id: int | None = None) -> Decimal:
    """Cash set aside for resting orders, for the part of each not filled yet: buys at their limit (or trigger)
    price with the charges their rest will debit at it, and the margin of resting sells beyond the long position
    they would sell (they would open a short).

    A buy's charges are reserved with its cost: reserved without them, a later order could take the room they
    need, and the resting buy would be refused at its fill for funds the check had let it count on
    (accounts.paper._fill pays cost and charges from the same buying power). A fill below the reserved price
    costs no more in charges (the schedule grows with an order's value)."""
    resting = list(_resting_orders(account, exclude_order_id=exclude_order_id))
    charged = charges_enabled()
    instrument_types: dict[tuple[str, str], str] = {}
    reserved = Decimal("0")
    for order in resting:
        if order.side != Order.Side.BUY or order.quantity <= order.filled_quantity:
            continue
        price = _order_price(order)
        reserved += (order.quantity - order.filled_quantity) * price
        if charged and price > 0:
            reserved += _resting_buy_charges(
                account=account, order=order, price=price, instrument_types=instrument_types
            )
    held = {(p.exchange, p.symbol, p.product): p.quantity for p in account.paper_positions.all()}
    sells = defaultdict(list)
    for order in resting:
        if order.side == Order.Side.SELL and order.product != "CNC":
            sells[(order.exchange, order.symbol, order.product)].append(order)
    for instrument, orders in sells.items():
        unfilled = sum(order.quantity - order.filled_quantity for order in orders)
        opening = max(unfilled - max(held.get(instrument, Decimal("0")), 0), 0)
        price = max(_order_price(order) for order in orders)
        reserved += opening * price * margin_rate(tenant=account.user.tenant, product=instrument[2])
    return reserved.quantize(CENT, rounding=ROUNDING)


def short_exposure(*, account: TradingAccount, marks) -> Decimal:
    """What the open shorts tie up: buying them back at the mark, plus their margin.

    A short sale's proceeds are in cash but are not buying power: they are owed back.
    """
    exposure = Decimal("0")
    for position in account.paper_positions.filter(quantity__lt=0):
        mark = marks.get((position.exchange, position.symbol)) or position.average_price
        rate = margin_rate(tenant=account.user.tenant, product=position.product)
        exposure += -position.quantity * mark * (1 + rate)
    return exposure.quantize(CENT, rounding=ROUNDING)


def paper_buying_power(*, account: TradingAccount, marks, exclude_order_id: int | None = None) -> Decimal:
    """Cash less what resting orders reserve and what open shorts tie up (marked at `marks`)."""
    return (
        account.cash
        - reserved_cash(account=account, exclude_order_id=exclude_order_id)
        - short_exposure(account=account, marks=marks)
    )


def _reserved_sell_quantity(*, account: TradingAccount, exchange: str, symbol: str, product: str, exclude_order_id):
    resting = _resting_orders(account, exclude_order_id=exclude_order_id).filter(
        side=Order.Side.SELL, exchange=exchange, symbol=symbol, product=product
    )
    return resting.aggregate(total=Sum(F("quantity") - F("filled_quantity")))["total"] or Decimal("0")


def _position_quantity(*, account, exchange, symbol, product) -> Decimal:
    position = account.paper_positions.filter(exchange=exchange, symbol=symbol, product=product).first()
    return position.quantity if position else Decimal("0")


def buy_charges(*, account: TradingAccount, request, price: Decimal, quantities: list[Decimal]) -> Decimal:
    """The charges a buy of these fills (a sliced order's slices, each its own executed order) at `price` adds:
    what the fills will debit besides their cost, so that an order the check lets through is not refused at its
    fill for them (accounts.paper._fill pays the charges from the same buying power)."""
    return sum(
        (
            order_charges(account=account, order=request, price=price, quantity=quantity).total
            for quantity in quantities
        ),
        Decimal("0.00"),
    )


def paper_buying_power_check(
    *, account: TradingAccount, request, price: Decimal, marks, replacing=None, slices: list[Decimal] | None = None
) -> None:
    """Raise a per-field ValidationError when the locked account cannot afford the order at `price`, the
    price it can fill at. A buy needs its cost (beyond the short it covers) and its charges; a sell that opens a short
    needs the short's margin. `replacing` is the order a modify changes: its own reservation is freed."""
    exclude = replacing.pk if replacing else None
    # A modified order that has partly filled needs room for its rest only.
    quantity = request.quantity - (replacing.filled_quantity if replacing else Decimal("0"))
    held = _position_quantity(
        account=account, exchange=request.exchange, symbol=request.symbol, product=request.product
    )
    selling_already = _reserved_sell_quantity(
        account=account,
        exchange=request.exchange,
        symbol=request.symbol,
        product=request.product,
        exclude_order_id=exclude,
    )
    if request.side == Order.Side.SELL and request.product == "CNC":
        sellable = held - selling_already
        if quantity > sellable:
            raise ValidationError(
                {"quantity": [f"Cannot sell {quantity} {request.symbol} (CNC): {max(sellable, 0)} held."]}
            )
        return
    if request.side == Order.Side.BUY:
        needed = max(quantity - max(-held, Decimal("0")), Decimal("0")) * price
        needed += buy_charges(account=account, request=request, price=price, quantities=slices or [quantity])
    else:
        opening = max(quantity - max(held - selling_already, Decimal("0")), Decimal("0"))
        needed = opening * price * margin_rate(tenant=account.user.tenant, product=request.product)
    needed = needed.quantize(CENT, rounding=ROUNDING)
    available = paper_buying_power(account=account, marks=marks, exclude_order_id=exclude)
    if needed > available:
        raise ValidationError({"quantity": [f"Insufficient buying power: needs {needed}, available {available}."]})
