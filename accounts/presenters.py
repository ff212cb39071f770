"""How an order, a position, a holding and funds look in JSON: one presenter per entity, used everywhere.

The API's answers, the order WebSocket's messages and the renderings kept with the snapshots in Redis all
show an entity through here, so no two of them can drift apart. A presenter takes the model (Order) or
the neutral broker type (brokers.adapters.types: Position, Holding, Funds; paper builds the same types)
and returns plain dicts, lists, strings, ints and None, ready for any JSON encoder.

Numbers follow thor.money's policy: amounts as text with 2 decimals, prices with 4, quantities as whole
numbers, half up; timestamps as DRF's DateTimeField renders them. A value that is missing (None), or is
no number at all (NaN, infinity), is shown as null, never as a zero it is not. A finite number too long
for Decimal's 28 digits is refused (InvalidOperation), never rounded into another one.

The Output serializers of accounts.api.serializers stay as the OpenAPI schema of these shapes;
accounts/tests/test_presenters.py holds each presenter to its serializer.
"""

from decimal import Decimal

from thor import money
from thor.fields import timestamp_text


def _shown(value) -> bool:
    """False when the value is missing or is no number at all (NaN, infinity: a broker's glitch, shown as not
    known rather than as text a client cannot compute with, or as an error for the whole read)."""
    if value is None:
        return False
    if isinstance(value, Decimal):  # what the database and the adapters give: no conversion to pay for
        return value.is_finite()
    return money.to_decimal(value).is_finite()


# Each has a short path for what the database and the adapters give (an int quantity, a Decimal), the same
# rounding as thor.money's: a socket's burst of prices presents some forty numbers per account it follows.


def _quantity(value) -> int | None:
    if type(value) is int:
        return value
    return money.quantity(value) if _shown(value) else None


def _price(value) -> str | None:
    if type(value) is Decimal:
        return str(value.quantize(money.PRICE_STEP, rounding=money.ROUNDING)) if value.is_finite() else None
    return money.price_text(value) if _shown(value) else None


def _money(value) -> str | None:
    if type(value) is Decimal:
        return str(value.quantize(money.CENT, rounding=money.ROUNDING)) if value.is_finite() else None
    return money.money_text(value) if _shown(value) else None


def _timestamp(value) -> str | None:
    return None if value is None else timestamp_text(value)


def order_data(order) -> dict:
    """An order (accounts.models.Order, or one rebuilt from an OrderEvent) as `OrderOutputSerializer` documents it.

    Kept cheap on purpose: a page of the order list presents fifty of them per request.

    `children`: the slices of an order placed above the exchange's freeze quantity (accounts.slicing), from
    the `child_orders` its reader loaded (accounts.selectors prefetches them); empty for any other order.
    On the socket each slice's change comes as an order of its own, then the parent's new aggregate with its
    slices (accounts.slicing.parent_aggregate loads them); an order rebuilt from its audit row has none."""
    return {
        "id": order.pk,
        "client_order_id": order.client_order_id,
        "broker_order_id": order.broker_order_id,
        "tradingsymbol": order.symbol,
        "exchange": order.exchange,
        "transaction_type": order.side,
        "quantity": _quantity(order.quantity),
        "order_type": order.order_type,
        "product": order.product,
        "price": _price(order.price),
        "trigger_price": _price(order.trigger_price),
        "validity": order.validity,
        "tag": order.tag,
        "algo_id": order.algo_id,
        "status": order.status,
        "status_message": order.status_message,
        "filled_quantity": _quantity(order.filled_quantity),
        "average_price": _price(order.average_price),
        "charges": _money(order.charges),
        "created_at": _timestamp(order.created_at),
        "updated_at": _timestamp(order.updated_at),
        "children": [_child_data(child) for child in getattr(order, "child_orders", ())],
    }


def _child_data(child) -> dict:
    return {
        "id": child.pk,
        "broker_order_id": child.broker_order_id,
        "quantity": _quantity(child.quantity),
        "status": child.status,
        "status_message": child.status_message,
        "filled_quantity": _quantity(child.filled_quantity),
        "average_price": _price(child.average_price),
    }


def orders_data(orders) -> list[dict]:
    return [order_data(order) for order in orders]


def batch_data(result) -> dict:
    """A batch's outcome (accounts.orders.batch.BatchResult) as `BatchOutputSerializer` documents it."""
    return {
        "status": result.status,
        "legs": [
            {"index": leg.index, "outcome": leg.outcome, "message": leg.message, "order": order_data(leg.order)}
            for leg in result.legs
        ],
    }


def position_data(position) -> dict:
    """A position (brokers.adapters.types.Position) as `PositionOutputSerializer` documents it."""
    return {
        "tradingsymbol": position.symbol,
        "exchange": position.exchange,
        "product": position.product,
        "quantity": _quantity(position.quantity),
        "average_price": _price(position.average_price),
        "last_price": _price(position.last_price),
        "realised_pnl": _money(position.realised_pnl),
        "unrealised_pnl": _money(position.unrealised_pnl),
        "day_pnl": _money(position.day_pnl),
        "value": _money(position.value),
    }


def positions_data(positions) -> list[dict]:
    return [position_data(position) for position in positions]


def holding_data(holding) -> dict:
    """A holding (brokers.adapters.types.Holding) as `HoldingOutputSerializer` documents it."""
    return {
        "tradingsymbol": holding.symbol,
        "exchange": holding.exchange,
        "quantity": _quantity(holding.quantity),
        "average_price": _price(holding.average_price),
        "last_price": _price(holding.last_price),
        "pnl": _money(holding.pnl),
        "day_change": _money(holding.day_change),
        "value": _money(holding.value),
        "isin": holding.isin,
    }


def holdings_data(holdings) -> list[dict]:
    return [holding_data(holding) for holding in holdings]


FUNDS_AMOUNTS = ("cash", "available", "utilised", "buying_power", "net_liquidation", "charges_today")


def funds_data(funds) -> dict:
    """An account's funds (brokers.adapters.types.Funds) as `FundsOutputSerializer` documents it."""
    return {"currency": funds.currency, **{name: _money(getattr(funds, name)) for name in FUNDS_AMOUNTS}}


def tick_data(*, instrument: str, instrument_token: int, last_price, as_of) -> dict:
    """A watched instrument's last price from the market stream, in the socket's `ticks` message (accounts.ticks)."""
    return {
        "instrument": instrument,
        "instrument_token": instrument_token,
        "last_price": _price(last_price),
        "as_of": _timestamp(as_of),
    }


def live_read_data(*, account_id: int, source: str, as_of, data) -> dict:
    """`{data, account_id, source, as_of}`: a presented read with where its numbers came from and how old
    they are (`PositionsOutputSerializer`, `HoldingsOutputSerializer`, `FundsEnvelopeOutputSerializer`).
    `data` first: the order the API has always sent its keys in."""
    return {"data": data, "account_id": account_id, "source": source, "as_of": _timestamp(as_of)}
