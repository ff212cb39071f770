"""Applying a paper fill: the position, the cash (less the fill's charges), the order and its audit row.

What may fill is decided before (accounts.paper checks buying power; a square-off or an expiry settlement
closes whatever is held); here the fill is only applied, on the locked account.
"""

from decimal import Decimal

from accounts.audit import order_event_record, order_state
from accounts.charges import Charges, fill_charges
from accounts.market_data import instrument_get
from accounts.models import Order, PaperPosition, TradingAccount
from accounts.slicing import parent_aggregate
from thor.money import CENT, ROUNDING

AVERAGE_STEP = Decimal("0.0001")
# The audit kinds of a fill: a trader's order, an intraday square-off, an expiry settlement.
FILL_KINDS = ("filled", "squared_off", "settled")


def position_apply(position: PaperPosition, *, side: str, quantity: Decimal, price: Decimal) -> None:
    """The position after `quantity` at `price`: a larger one averages its price, a smaller one realises P&L."""
    signed = quantity if side == Order.Side.BUY else -quantity
    held = position.quantity
    if held == 0 or (held > 0) == (signed > 0):
        position.average_price = (
            (abs(held) * position.average_price + quantity * price) / abs(held + signed)
        ).quantize(AVERAGE_STEP)
    else:
        closed = min(quantity, abs(held))
        direction = 1 if held > 0 else -1
        position.realised_pnl += (closed * (price - position.average_price) * direction).quantize(
            CENT, rounding=ROUNDING
        )
        if quantity > abs(held):
            position.average_price = price
        elif quantity == abs(held):
            position.average_price = Decimal("0")
    position.quantity = held + signed


def order_charges(*, account: TradingAccount, order: Order, price: Decimal, exercise: bool = False) -> Charges:
    """What filling the whole order at `price` costs on this account (accounts.charges)."""
    instrument = instrument_get(exchange=order.exchange, symbol=order.symbol)
    return fill_charges(
        tenant=account.user.tenant,
        currency=account.currency,
        exchange=order.exchange,
        product=order.product,
        instrument_type=instrument.instrument_type if instrument else "",
        side=order.side,
        quantity=order.quantity,
        price=price,
        exercise=exercise,
    )


def fill_cost(*, order: Order, price: Decimal) -> Decimal:
    return (order.quantity * price).quantize(CENT, rounding=ROUNDING)


def fill_apply(
    *,
    account: TradingAccount,
    order: Order,
    position: PaperPosition,
    price: Decimal,
    charges: Charges,
    kind: str = "filled",
    message: str = "",
    actor=None,
) -> None:
    """Fill the whole order at `price` on the locked account: the position moves, cash moves by the fill's value
    and is debited its charges, and the order is COMPLETE with its charges (the audit row lists them)."""
    before = order_state(order)
    position_apply(position, side=order.side, quantity=order.quantity, price=price)
    position.save()
    cost = fill_cost(order=order, price=price)
    account.cash += (-cost if order.side == Order.Side.BUY else cost) - charges.total
    account.save(update_fields=["cash", "updated_at"])
    order.status = Order.Status.COMPLETE
    order.filled_quantity = order.quantity
    order.average_price = price
    order.charges = charges.total
    order.status_message = message
    order.save()
    order_event_record(
        order=order, kind=kind, before=before, actor=actor, broker_response={"charges": charges.as_dict()}
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
