"""Neutral types between Thor and every broker. Money and quantities are Decimal."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Tokens:
    # Kept out of repr so a log line or a traceback never prints a session.
    access_token: str = field(repr=False)
    refresh_token: str = field(default="", repr=False)
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    broker_user_id: str = ""


@dataclass(frozen=True)
class BrokerAccountRef:
    """One account a login can trade, as the broker names it: Schwab's hashValue is the id every account
    path takes, the plain number is only for showing (masked) and for matching what a user typed."""

    broker_account_id: str
    account_number: str
    display_name: str = ""
    kind: str = ""  # MARGIN | CASH


@dataclass(frozen=True)
class Profile:
    broker_user_id: str
    name: str
    email: str
    broker: str
    exchanges: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    order_types: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Funds:
    currency: str
    cash: Decimal
    available: Decimal
    utilised: Decimal
    buying_power: Decimal
    net_liquidation: Decimal
    # Paper accounts: the charges of today's fills (accounts.charges); brokers do not say (None).
    charges_today: Decimal | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Position:
    symbol: str
    exchange: str
    product: str
    quantity: Decimal
    # None when the broker does not say (Schwab's Position requires no field): shown as null, not as a
    # zero cost basis.
    average_price: Decimal | None
    last_price: Decimal
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    day_pnl: Decimal
    value: Decimal
    instrument_token: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Holding:
    symbol: str
    exchange: str
    quantity: Decimal
    average_price: Decimal | None  # as Position's
    last_price: Decimal
    pnl: Decimal
    day_change: Decimal
    value: Decimal
    isin: str = ""
    instrument_token: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class InstrumentInfo:
    """One instrument as a broker's instrument search describes it (Schwab's `/marketdata/v1/instruments`)."""

    symbol: str
    # Thor's exchange ("NASDAQ", "NYSE"); "" when the broker lists it on a venue Thor does not trade (OTC).
    exchange: str
    name: str
    asset_type: str  # the broker's: EQUITY, ETF, MUTUAL_FUND, INDEX, ...
    cusip: str = ""
    venue: str = ""  # the broker's own name of the exchange
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class OrderRequest:
    symbol: str
    exchange: str
    side: str  # BUY | SELL
    quantity: Decimal
    order_type: str  # MARKET | LIMIT | SL | SL-M
    product: str  # CNC | MIS | NRML
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    validity: str = "DAY"
    tag: str = ""  # the client order id: how a timed-out placement is found again
    algo_id: str = ""  # the exchange algo (strategy) id, where the broker takes one (Kite's `algo_id`)


@dataclass(frozen=True)
class SliceOutcome:
    """One slice of a sliced placement as the broker answered it: its order id, or why it was not placed."""

    broker_order_id: str = ""
    error: str = ""


@dataclass(frozen=True)
class SlicedPlacement:
    """A broker's answer to an order it sliced itself (Kite's autoslice): the parent's id and each slice's
    outcome, in the broker's order."""

    broker_order_id: str
    children: tuple[SliceOutcome, ...]
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class OrderResult:
    broker_order_id: str
    status: str
    symbol: str = ""
    exchange: str = ""
    side: str = ""
    quantity: Decimal = Decimal("0")
    filled_quantity: Decimal = Decimal("0")
    average_price: Decimal | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    order_type: str = ""
    product: str = ""
    validity: str = ""
    tag: str = ""
    status_message: str = ""
    placed_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def acknowledged(cls, broker_order_id: str, order: "OrderRequest") -> "OrderResult":
        """What a broker's bare acknowledgement of a placement says: the request, now with its id."""
        return cls(
            broker_order_id=broker_order_id,
            status="PENDING",
            symbol=order.symbol,
            exchange=order.exchange,
            side=order.side,
            quantity=order.quantity,
            price=order.price,
            trigger_price=order.trigger_price,
            order_type=order.order_type,
            product=order.product,
            validity=order.validity,
            tag=order.tag,
        )


@dataclass(frozen=True)
class DepthLevel:
    """One level of the order book: `quantity` at `price` across `orders` orders."""

    price: Decimal
    quantity: int
    orders: int = 0


@dataclass(frozen=True)
class Quote:
    symbol: str
    exchange: str
    last_price: Decimal
    instrument_token: int | None = None
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    volume: int | None = None
    timestamp: datetime | None = None
    # The exchange's daily price band (Kite's circuit limits); None where the broker does not say.
    lower_circuit_limit: Decimal | None = None
    upper_circuit_limit: Decimal | None = None
    # Open interest (derivatives), and the book's best levels, best first, where the broker gives them.
    oi: int | None = None
    bids: tuple[DepthLevel, ...] = ()
    asks: tuple[DepthLevel, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
