"""Applying a paper fill: the position, the cash (less the fill's charges), the order and its audit row.

What may fill is decided before (accounts.paper checks buying power; a square-off or an expiry settlement
closes whatever is held); here the fill is only applied, on the locked account.
"""

from datetime import date
from decimal import Decimal

from accounts.audit import order_event_record, order_state
from accounts.charges import Charges, fill_charges
from accounts.market_data import instrument_get
from accounts.models import Order, PaperPosition, TradingAccount
from accounts.slicing import parent_aggregate
from brokers.adapters.types import OrderRequest
from thor.money import CENT, ROUNDING

AVERAGE_STEP = Decimal("0.0001")
# The audit kinds of a fill: a trader's order, an intraday square-off, an expiry settlement.
FILL_KINDS = ("filled", "squared_off", "settled")


def position_apply(position: PaperPosition, *, side: str, quantity: Decimal, price: Decimal) -> None:
    """The position after `quantity` at `price`: a larger one averages its price, a smaller one realises P&L (in
    money: the position's multiplier times the price difference)."""
    signed = quantity if side == Order.Side.BUY else -quantity
    held = position.quantity
    if held == 0 or (held > 0) == (signed > 0):
        position.average_price = (
            (abs(held) * position.average_price + quantity * price) / abs(held + signed)
        ).quantize(AVERAGE_STEP)
    else:
        closed = min(quantity, abs(held))
        direction = 1 if held > 0 else -1
        position.realised_pnl += (closed * (price - position.average_price) * direction * position.multiplier).quantize(
            CENT, rounding=ROUNDING
        )
        if quantity > abs(held):
            position.average_price = price
        elif quantity == abs(held):
            position.average_price = Decimal("0")
    position.quantity = held + signed


def order_charges(
    *,
    account: TradingAccount,
    order: Order | OrderRequest,
    price: Decimal,
    multiplier: int,
    quantity: Decimal | None = None,
    exercise: bool = False,
    instrument_type: str | None = None,
    squared_off: bool = False,
    on: date | None = None,
) -> Charges:
    """What `quantity` of the order (the whole order when None) at `price` costs on this account as one executed
    order (accounts.charges), each unit of quantity worth `multiplier` times the price (the position's or the
    contract's: brokers.contract_multipliers); `order` may be a request not placed yet (the pre-trade check).
    `instrument_type`: the order's instrument's, when the caller knows it already. `on`: the trade day whose rates
    apply (today when None)."""
    if instrument_type is None:
        instrument = instrument_get(exchange=order.exchange, symbol=order.symbol)
        instrument_type = instrument.instrument_type if instrument else ""
    return fill_charges(
        tenant=account.user.tenant,
        currency=account.currency,
        exchange=order.exchange,
        product=order.product,
        instrument_type=instrument_type,
        side=order.side,
        quantity=order.quantity if quantity is None else quantity,
        price=price,
        multiplier=multiplier,
        exercise=exercise,
        squared_off=squared_off,
        on=on,
    )


def average_after(order: Order, *, quantity: Decimal, price: Decimal) -> Decimal:
    """The order's average price once `quantity` more fills at `price`."""
    filled = order.filled_quantity
    if not filled or order.average_price is None:
        return price
    return ((filled * order.average_price + quantity * price) / (filled + quantity)).quantize(AVERAGE_STEP)


def fill_charges_due(
    *,
    account: TradingAccount,
    order: Order,
    quantity: Decimal,
    price: Decimal,
    multiplier: int,
    instrument_type: str | None = None,
) -> Charges:
    """What a fill of `quantity` at `price` adds to the order's charges.

    An order's fills together are one executed order, as a broker charges them (a flat brokerage is paid once,
    a cap applies to the whole): what the fills so far and this one cost together, less what the fills so far
    cost, component by component (never below zero: the averages are kept to 4 decimals)."""
    if not order.filled_quantity or order.average_price is None:
        return order_charges(
            account=account,
            order=order,
            price=price,
            quantity=quantity,
            multiplier=multiplier,
            instrument_type=instrument_type,
        )
    together = order_charges(
        account=account,
        order=order,
        quantity=order.filled_quantity + quantity,
        price=average_after(order, quantity=quantity, price=price),
        multiplier=multiplier,
        instrument_type=instrument_type,
    )
    so_far = order_charges(
        account=account,
        order=order,
        quantity=order.filled_quantity,
        price=order.average_price,
        multiplier=multiplier,
        instrument_type=instrument_type,
    )
    return Charges(
        currency=together.currency,
        components={
            name: max(amount - so_far.components.get(name, Decimal("0")), Decimal("0.00"))
            for name, amount in together.components.items()
        },
    )


def fill_cost(*, quantity: Decimal, price: Decimal, multiplier: int) -> Decimal:
    """What `quantity` at `price` pays or brings, each unit of quantity `multiplier` price units."""
    return (quantity * price * multiplier).quantize(CENT, rounding=ROUNDING)


def fill_apply(
    *,
    account: TradingAccount,
    order: Order,
    position: PaperPosition,
    price: Decimal,
    charges: Charges,
    quantity: Decimal | None = None,
    kind: str = "filled",
    message: str = "",
    actor=None,
    details: dict | None = None,
) -> None:
    """Fill `quantity` of the order (all that is left of it when None) at `price` on the locked account: the
    position moves, cash moves by the fill's value and is debited `charges` (what this fill adds), and the order
    is COMPLETE once all of it has filled, else OPEN with its filled quantity, average price and charges so far.
    Each fill is its own audit row, listing its quantity, price and charges (and `details`: the levels taken)."""
    quantity = order.quantity - order.filled_quantity if quantity is None else quantity
    before = order_state(order)
    position_apply(position, side=order.side, quantity=quantity, price=price)
    position.save()
    cost = fill_cost(quantity=quantity, price=price, multiplier=position.multiplier)
    account.cash += (-cost if order.side == Order.Side.BUY else cost) - charges.total
    account.save(update_fields=["cash", "updated_at"])
    order.average_price = average_after(order, quantity=quantity, price=price)
    order.filled_quantity += quantity
    order.status = Order.Status.COMPLETE if order.filled_quantity >= order.quantity else Order.Status.OPEN
    order.charges = (order.charges or Decimal("0.00")) + charges.total
    order.status_message = message
    order.save()
    fill = {"quantity": str(quantity), "price": str(price), **(details or {})}
    order_event_record(
        order=order,
        kind=kind,
        before=before,
        actor=actor,
        broker_response={"charges": charges.as_dict(), "fill": fill},
    )
    parent_update(order=order, actor=actor)


def parent_update(*, order: Order, actor=None) -> None:
    """A slice changed: its parent's aggregate follows (accounts.slicing)."""
    if order.parent_id is not None:
        parent_aggregate(parent=Order.objects.get(pk=order.parent_id), actor=actor)


def status_set(*, order: Order, status: str, kind: str, message: str = "", actor=None) -> None:
    """The order's new status, audited (and its parent's aggregate, for a slice)."""
    before = order_state(order)
    order.status = status
    order.status_message = message
    order.save()
    order_event_record(order=order, kind=kind, before=before, actor=actor)
    parent_update(order=order, actor=actor)
