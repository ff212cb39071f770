"""What a paper account can afford: cash less what its resting orders reserve (for the part of each not filled
yet, a buy's charges with its cost) and what its open shorts tie up, and the pre-trade check of an order against
it. Run on the locked account (accounts.account_locks.account_lock), so concurrent orders see each other's reservations.

The check needs what the order adds to the reservations, reckoned the same way (`_side_reserve`): an order it
lets through never leaves the reservations above the buying power it was checked against.
"""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import F, Sum

from accounts.charges import charges_enabled
from accounts.market_data import Instrument, instrument_get
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
    # A market-type order working at the market (a market order, a triggered stop-market) is reserved at the price
    # kept when it came to rest; one without (a market order partly filled at once) at what it filled at so far.
    kept = order.raw.get(RESERVE_PRICE)
    return order.price or (Decimal(kept) if kept else None) or order.trigger_price or order.average_price or Decimal(0)


# A new order in the check's reckoning, after every resting one: the engine fills the resting ones by id.
_NEW = 1 << 62


def _uncovered(entries, cover: Decimal) -> list[Decimal]:
    """How much of each of `entries` ((sort id, unfilled quantity, price)) is not covered by `cover`, what the
    position gives them (a short the buys buy back, a long the sells sell): the cheapest take it first. Whichever
    fills first takes it in the engine; the dearest left uncovered is the most the rest can need."""
    left = max(cover, Decimal("0"))
    uncovered = [Decimal("0")] * len(entries)
    for index in sorted(range(len(entries)), key=lambda i: (entries[i][2], entries[i][0])):
        _, quantity, _ = entries[index]
        covered = min(quantity, left)
        left -= covered
        uncovered[index] = quantity - covered
    return uncovered


def buyback_excess(*, quantity: Decimal, price: Decimal, mark: Decimal | None, rate: Decimal) -> Decimal:
    """What buying back `quantity` of a short at `price` costs beyond what its exposure holds for it (its mark
    plus its margin, `PaperCommitments.short_exposure`): nothing, unless the price is above the mark by more than
    the margin."""
    if mark is None or quantity <= 0:
        return Decimal("0")
    return quantity * max(price - mark * (1 + rate), Decimal("0"))


Contract = tuple[str, int]  # an instrument's type (for the charges) and its multiplier


def _contract(exchange: str, symbol: str, contracts: dict) -> Contract:
    """The instrument's type and multiplier (brokers.contract_multipliers), read once into `contracts`: one whose
    multiplier Thor does not know reserves at 1 (a paper order on it is refused, accounts.checks)."""
    key = (exchange, symbol)
    if key not in contracts:
        instrument: Instrument | None = instrument_get(exchange=exchange, symbol=symbol)
        contracts[key] = (instrument.instrument_type, instrument.multiplier or 1) if instrument else ("", 1)
    return contracts[key]


def _side_reserve(
    *,
    account: TradingAccount,
    orders,
    held: Decimal,
    rate: Decimal,
    mark: Decimal | None,
    contracts: dict,
) -> Decimal:
    """What one instrument's resting orders on one side (`orders`: (order, sort id, unfilled, price, floor))
    reserve: buys their cost beyond the short `held` (negative) they buy back (and what buying it back costs beyond what
    its exposure holds for it, `buyback_excess`), with the charges of their whole rest;
    sells (`rate`: the product's margin rate) the margin of what they sell short beyond the long `held`, with the
    charges of that part (a short's proceeds are owed back: its charges are paid from buying power, while a sale
    of what is held pays them from its proceeds), and what that part loses at once if it fills below the mark.
    A sell's margin is at the higher of its price and `mark` (the instrument's last price, where known): once
    filled, its short is margined at the mark (`PaperCommitments.short_exposure`), as the check valued it
    (accounts.checks.order_value_price); reserved at a limit below the mark, a fill at the same prices would tie
    up more than was set aside. Its `floor` is the lowest price it can fill at (a resting order's is its price:
    its limit, or what a market order rests at; a new one's accounts.checks.sell_fill_floor): a short sold
    below the mark is marked at the mark, its proceeds (mark - floor) x quantity short of what buying it back
    there costs, a loss paid from buying power the moment it fills. A new order (not placed yet: an
    OrderRequest) may be among them, for the check. Every amount is in money: quantity x price x the contract's
    multiplier (`contracts`)."""
    if not orders:
        return Decimal("0")
    instrument_type, multiplier = _contract(orders[0][0].exchange, orders[0][0].symbol, contracts)
    buying = orders[0][0].side == Order.Side.BUY
    cover = -held if buying else held
    uncovered = _uncovered([entry[1:4] for entry in orders], cover)
    charged = charges_enabled()
    reserved = charges_reserved = Decimal("0")
    for (order, _, unfilled, price, floor), short in zip(orders, uncovered, strict=True):
        if not buying and mark is not None:
            price = max(price, mark)
            reserved += short * max(mark - floor, Decimal("0"))
        if buying:
            reserved += short * price + buyback_excess(quantity=unfilled - short, price=price, mark=mark, rate=rate)
            charged_quantity = unfilled
        else:
            reserved += short * price * rate
            charged_quantity = short
        if charged and price > 0 and charged_quantity > 0:
            # A resting order's rest is charged with its fills so far as one executed order; a new one on its own.
            charges = fill_charges_due if isinstance(order, Order) else order_charges
            charges_reserved += charges(
                account=account,
                order=order,
                quantity=charged_quantity,
                price=price,
                multiplier=multiplier,
                instrument_type=instrument_type,
            ).total
    return reserved * multiplier + charges_reserved


def _grouped(account: TradingAccount, *, exclude_order_id: int | None) -> dict:
    """The resting orders' unfilled rests, per (exchange, symbol, product, side): (order, id, unfilled, price,
    floor), a resting order's floor its price.
    A CNC sell sells what is held (the check and the fill refuse it otherwise): it reserves nothing."""
    groups = defaultdict(list)
    for order in _resting_orders(account, exclude_order_id=exclude_order_id):
        unfilled = order.quantity - order.filled_quantity
        if unfilled <= 0 or (order.side == Order.Side.SELL and order.product == "CNC"):
            continue
        key = (order.exchange, order.symbol, order.product, order.side)
        price = _order_price(order)
        groups[key].append((order, order.pk, unfilled, price, price))
    return groups


@dataclass(frozen=True)
class PaperCommitments:
    """What a paper account has committed, read once: its resting orders (`reserved`: what they reserve, as
    `reserved_cash` says) and its positions (`short_exposure`: what its open shorts tie up). Each reckons at any marks
    without a database read: the check and a fill read once for both, and a socket's book (accounts.pnl) reckons
    them again at each tick (a resting short sale's margin and a short's buying back move with the mark, as
    GET .../funds reckons them)."""

    account: TradingAccount
    groups: dict  # (exchange, symbol, product, side) -> the unfilled rests (`_grouped`)
    positions: list  # the account's positions
    held: dict  # (exchange, symbol, product) -> the position's quantity
    rates: dict  # product -> its margin rate, for every product an order rests or a position is held on
    contracts: dict  # (exchange, symbol) -> (instrument type, multiplier) of what an order rests on (`_contract`)

    @property
    def instruments(self) -> set[tuple[str, str]]:
        """The (exchange, symbol) of every instrument an order rests on: what `reserved` reads of the marks."""
        return {(exchange, symbol) for exchange, symbol, _, _ in self.groups}

    def reserved(self, marks=None) -> Decimal:
        reserved = Decimal("0")
        for (exchange, symbol, product, _), orders in self.groups.items():
            reserved += _side_reserve(
                account=self.account,
                orders=orders,
                held=self.held.get((exchange, symbol, product), Decimal("0")),
                rate=self.rates[product],
                mark=(marks or {}).get((exchange, symbol)),
                contracts=self.contracts,
            )
        return reserved.quantize(CENT, rounding=ROUNDING)

    def short_exposure(self, marks=None) -> Decimal:
        """What the open shorts tie up: buying them back at the mark (a position without one: at its average price),
        plus their margin. A short sale's proceeds are in cash but are not buying power: they are owed back."""
        exposure = Decimal("0")
        for position in self.positions:
            if position.quantity < 0:
                mark = (marks or {}).get((position.exchange, position.symbol)) or position.average_price
                exposure += -position.quantity * mark * (1 + self.rates[position.product]) * position.multiplier
        return exposure.quantize(CENT, rounding=ROUNDING)

    def utilised(self, marks=None) -> Decimal:
        return self.reserved(marks) + self.short_exposure(marks)


def paper_commitments(*, account: TradingAccount, exclude_order_id: int | None = None) -> PaperCommitments:
    """The account's resting orders (but `exclude_order_id`) and positions, with the margin rates and contracts
    their reckoning needs, read now (two queries; the contracts from the master's cache)."""
    groups = _grouped(account, exclude_order_id=exclude_order_id)
    positions = list(account.paper_positions.all())
    tenant = account.user.tenant
    contracts: dict[tuple[str, str], Contract] = {}
    for exchange, symbol, _, _ in groups:
        _contract(exchange, symbol, contracts)
    products = {product for _, _, product, _ in groups} | {position.product for position in positions}
    return PaperCommitments(
        account=account,
        groups=dict(groups),
        positions=positions,
        held={(p.exchange, p.symbol, p.product): p.quantity for p in positions},
        rates={product: margin_rate(tenant=tenant, product=product) for product in products},
        contracts=contracts,
    )


def reserved_cash(*, account: TradingAccount, exclude_order_id: int | None = None, marks=None) -> Decimal:
    """Cash set aside for resting orders, for the part of each not filled yet: buys at their limit (or trigger)
    price beyond the short they would buy back, with the charges their rest will debit at it, and the margin of
    resting sells beyond the long position they would sell (they would open a short), with its charges, at the
    higher of their price and their instrument's mark in `marks` (last prices), where it has one.

    A buy's charges are reserved with its cost: reserved without them, a later order could take the room they
    need, and the resting buy would be refused at its fill for funds the check had let it count on
    (accounts.paper._fill pays cost and charges from the same buying power). A fill below the reserved price
    costs no more in charges (the schedule grows with an order's value). A buy that buys back a short needs no
    cost for that part: the short's exposure (`PaperCommitments.short_exposure`) already holds its buying back at
    the mark."""
    return paper_commitments(account=account, exclude_order_id=exclude_order_id).reserved(marks)


def paper_buying_power(*, account: TradingAccount, marks, exclude_order_id: int | None = None) -> Decimal:
    """Cash less what resting orders reserve and what open shorts tie up (marked at `marks`)."""
    return account.cash - paper_commitments(account=account, exclude_order_id=exclude_order_id).utilised(marks)


def _reserved_sell_quantity(*, account: TradingAccount, exchange: str, symbol: str, product: str, exclude_order_id):
    resting = _resting_orders(account, exclude_order_id=exclude_order_id).filter(
        side=Order.Side.SELL, exchange=exchange, symbol=symbol, product=product
    )
    return resting.aggregate(total=Sum(F("quantity") - F("filled_quantity")))["total"] or Decimal("0")


def _position_quantity(*, account, exchange, symbol, product) -> Decimal:
    position = account.paper_positions.filter(exchange=exchange, symbol=symbol, product=product).first()
    return position.quantity if position else Decimal("0")


def paper_buying_power_check(
    *,
    account: TradingAccount,
    request,
    price: Decimal,
    marks,
    replacing=None,
    slices: list[Decimal] | None = None,
    sell_floor: Decimal | None = None,
) -> None:
    """Raise a per-field ValidationError when the locked account cannot afford the order at `price`, the
    price it can fill at (a sell's highest: its margin's and charges' conservative side), and for a sell
    `sell_floor`, the lowest it can fill at (accounts.checks.sell_fill_floor): what it shorts below the mark loses
    the difference at once. `replacing` is the order a modify changes: its own reservation is freed.

    What it needs is what it adds to the reservations of its instrument's resting orders on its side
    (`reserved_cash`), as if it rested whole at `price` (its slices each an order of their own): a buy its cost
    beyond the short it buys back (what the other resting buys do not buy back already) and its charges; a sell
    that opens a short the short's margin, its charges and what it loses filled below the mark. So an order the
    check lets through never leaves the reservations above the buying power it was checked against."""
    exclude = replacing.pk if replacing else None
    # A modified order that has partly filled needs room for its rest only.
    quantity = request.quantity - (replacing.filled_quantity if replacing else Decimal("0"))
    if request.side == Order.Side.SELL and request.product == "CNC":
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
        sellable = held - selling_already
        if quantity > sellable:
            raise ValidationError(
                {"quantity": [f"Cannot sell {quantity} {request.symbol} (CNC): {max(sellable, 0)} held."]}
            )
        return
    # One read for the instrument's resting orders on this side and for the buying power they leave.
    commitments = paper_commitments(account=account, exclude_order_id=exclude)
    resting = commitments.groups.get((request.exchange, request.symbol, request.product, request.side), [])
    floor = price if sell_floor is None else min(price, sell_floor)
    new = [(request, _NEW + index, part, price, floor) for index, part in enumerate(slices or [quantity])]
    reckoning = {
        "account": account,
        "held": commitments.held.get((request.exchange, request.symbol, request.product), Decimal("0")),
        "rate": margin_rate(tenant=account.user.tenant, product=request.product),
        "mark": marks.get((request.exchange, request.symbol)),
        "contracts": commitments.contracts,
    }
    needed = _side_reserve(orders=resting + new, **reckoning) - _side_reserve(orders=resting, **reckoning)
    needed = needed.quantize(CENT, rounding=ROUNDING)
    available = account.cash - commitments.utilised(marks)
    if needed > available and not _closes_without_cost(
        account=account, request=request, quantity=quantity, price=price, floor=floor, commitments=commitments,
        marks=marks, rate=reckoning["rate"],
    ):  # fmt: skip
        raise ValidationError({"quantity": [f"Insufficient buying power: needs {needed}, available {available}."]})


def closing_frees_room(
    *, quantity: Decimal, price: Decimal, mark: Decimal, rate: Decimal, multiplier: int, charges
) -> bool:
    """Whether buying back `quantity` of a short at `price` frees at least what it costs in buying power: the
    short's exposure (its mark plus its margin) is released, its price and `charges` are paid."""
    return quantity * multiplier * (mark * (1 + rate) - price) >= charges


def _closes_without_cost(
    *, account, request, quantity: Decimal, price: Decimal, floor: Decimal, commitments, marks, rate: Decimal
) -> bool:
    """Whether the order only closes what is held (with the resting orders on its side: a buy of no more than the
    short, a sell of no more than the long) and leaves buying power no lower than it found it: a short bought back
    for no more than its exposure holds for it less its charges, a long sold for more than its charges. Such an
    order passes whatever the buying power, if the cash pays for it: a trader whose short went against them, the
    account's buying power below zero, can still close it."""
    key = (request.exchange, request.symbol, request.product)
    held = commitments.held.get(key, Decimal("0"))
    resting = sum((entry[2] for entry in commitments.groups.get((*key, request.side), [])), Decimal("0"))
    buying = request.side == Order.Side.BUY
    if quantity + resting > (-held if buying else held):
        return False
    instrument_type, multiplier = _contract(request.exchange, request.symbol, commitments.contracts)
    charges = Decimal("0")
    if charges_enabled():
        charged = order_charges(
            account=account,
            order=request,
            price=price if buying else floor,
            quantity=quantity,
            multiplier=multiplier,
            instrument_type=instrument_type,
        )
        charges = charged.total
    if not buying:
        return quantity * multiplier * floor >= charges
    short = next(p for p in commitments.positions if (p.exchange, p.symbol, p.product) == key)
    mark = marks.get((request.exchange, request.symbol)) or short.average_price
    affordable = quantity * price * multiplier + charges <= account.cash
    return affordable and closing_frees_room(
        quantity=quantity, price=price, mark=mark, rate=rate, multiplier=multiplier, charges=charges
    )
