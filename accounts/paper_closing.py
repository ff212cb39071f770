"""Paper positions the market closes for the trader: intraday (MIS) square-off, and settlement at expiry.

Each close is an order of its own (tag `squareoff` or `expiry`, a MARKET order in the opposite direction),
placed and filled on the locked account with audit rows (`placed`, then `squared_off` or `settled`), its
charges taken as any fill's (accounts.paper_fills). Nothing is deleted: the position stays, at quantity 0
with its realised P&L. Both passes are idempotent: a position already closed has nothing left to close, and
each account is re-read under its lock, so two passes at once close a position once.

**Square-off.** Each exchange's MIS positions are closed at the last price once its square-off time
(square_off_at, the exchange's local time) has passed that day; their resting MIS orders are cancelled.
A position still open from before the last square-off time (the pass did not run then) is closed on the
next pass. Paper trading has no market hours: an MIS position opened after the day's square-off time is
closed on the next pass, as a broker would refuse it.

**Expiry.** A derivative past its expiry (the exchange's close on its expiry day, or marked expired by the
master) is settled: index and stock options at their intrinsic value against the underlying's last price
(cash-settled: stock derivatives are not delivered on paper), futures at the underlying's last price,
MCX and currency futures (no underlying in the price source) at their own last price, and their options at their
intrinsic value against the future they are written on (MCX devolves an option into that future; paper settles
it in cash at the future's price). Resting orders on the contract
are cancelled. A contract whose settlement price the source does not give yet is left for the next pass.
"""

import logging
import secrets
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.account_locks import account_lock
from accounts.audit import order_event_record
from accounts.charges import OPTION_TYPES
from accounts.market_data import EXCHANGES
from accounts.market_data import instrument_get as rules_instrument_get
from accounts.models import Order, PaperPosition, TradingAccount
from accounts.paper_buying_power import RESTING_STATUSES
from accounts.paper_fills import fill_apply, order_charges, status_set
from accounts.prices import MarketDataUnavailable, price_source
from identity.models import Tenant
from market.selectors import instrument_get as master_instrument_get
from market.selectors import underlying_future

logger = logging.getLogger("accounts.paper_closing")

Key = tuple[str, str]  # (exchange, symbol)

# When each exchange's MIS positions are squared off, in its own time zone (EXCHANGES[...].timezone), as Zerodha
# does: equity 15:20, equity and index derivatives 15:25 and currency derivatives 16:45 IST; commodities 25 minutes
# before the close, which on MCX moves with the US clock (23:05 IST while New York keeps summer time, 23:30 in its
# winter); US equities 15:50 ET.
SQUARE_OFF_TIMES: dict[str, time] = {
    "NSE": time(15, 20),
    "BSE": time(15, 20),
    "NFO": time(15, 25),
    "BFO": time(15, 25),
    "CDS": time(16, 45),
    "BCD": time(16, 45),
    "NASDAQ": time(15, 50),
    "NYSE": time(15, 50),
}
SQUARE_OFF_BEFORE_CLOSE: dict[str, timedelta] = {"MCX": timedelta(minutes=25)}
SQUARE_OFF_EXCHANGES = (*SQUARE_OFF_TIMES, *SQUARE_OFF_BEFORE_CLOSE)
DERIVATIVE_EXCHANGES = ("NFO", "BFO", "MCX", "CDS", "BCD")
# Index derivatives settle against the index (Kite's `name` of the contract -> the index's listing).
INDEX_UNDERLYINGS: dict[Key, Key] = {
    ("NFO", "NIFTY"): ("NSE", "NIFTY 50"),
    ("NFO", "BANKNIFTY"): ("NSE", "NIFTY BANK"),
    ("NFO", "FINNIFTY"): ("NSE", "NIFTY FIN SERVICE"),
    ("NFO", "MIDCPNIFTY"): ("NSE", "NIFTY MID SELECT"),
    ("NFO", "NIFTYNXT50"): ("NSE", "NIFTY NEXT 50"),
    ("BFO", "SENSEX"): ("BSE", "SENSEX"),
    ("BFO", "BANKEX"): ("BSE", "BANKEX"),
}
STOCK_EXCHANGE_OF = {"NFO": "NSE", "BFO": "BSE"}
PRICE_STEP = Decimal("0.0001")


def _client_order_id() -> str:
    # The same shape as a placed order's id (accounts.orders.place): Thor's tag, 20 characters at most.
    return f"thor{secrets.token_hex(8)}"


def position_close(
    *,
    account: TradingAccount,
    position: PaperPosition,
    price: Decimal,
    kind: str,
    tag: str,
    message: str,
    exercise: bool = False,
    squared_off: bool = False,
    on: date | None = None,
) -> Order:
    """Close the locked account's position at `price` with an order of its own, placed and filled; its charges at
    the rates of trade day `on` (today when None: a settlement passes its contract's expiry day), and the auto
    square-off charge when the intraday square-off closes it (`squared_off`)."""
    order = Order.objects.create(
        account=account,
        client_order_id=_client_order_id(),
        symbol=position.symbol,
        exchange=position.exchange,
        side=Order.Side.SELL if position.quantity > 0 else Order.Side.BUY,
        quantity=abs(position.quantity),
        order_type="MARKET",
        product=position.product,
        validity="DAY",
        tag=tag,
    )
    order_event_record(order=order, kind="placed")
    charges = order_charges(
        account=account,
        order=order,
        price=price,
        multiplier=position.multiplier,
        exercise=exercise,
        squared_off=squared_off,
        on=on,
    )
    fill_apply(
        account=account, order=order, position=position, price=price, charges=charges, kind=kind, message=message
    )
    return order


def _cancel_resting(orders, *, message: str) -> int:
    cancelled = 0
    for order in orders:
        status_set(order=order, status=Order.Status.CANCELLED, kind="cancelled", message=message)
        cancelled += 1
    return cancelled


def _tenant_prices(tenant_id: int, instruments: set[Key], *, fresh: bool) -> dict[Key, Decimal]:
    try:
        prices = price_source(tenant=Tenant.objects.get(pk=tenant_id)).prices(instruments)
    except MarketDataUnavailable:
        logger.warning("No paper prices for tenant %s: closes wait for the next pass", tenant_id)
        return {}
    return dict(prices.fresh() if fresh else prices)


# --- Square-off ----------------------------------------------------------------------------------------------


def square_off_due(*, exchange: str, since: datetime, now: datetime) -> bool:
    """Is an MIS position (or order) on `exchange`, last changed at `since`, to be squared off at `now`?

    Once the day's square-off time has passed, anything; before it, only what dates from before yesterday's.
    """
    zone = EXCHANGES[exchange].timezone
    local = now.astimezone(zone)
    cut = square_off_at(exchange=exchange, day=local.date())
    return local >= cut or since < square_off_at(exchange=exchange, day=local.date() - timedelta(days=1))


def square_off_at(*, exchange: str, day: date) -> datetime:
    """The moment `exchange` squares off MIS positions on `day` (aware, in the exchange's time zone)."""
    rules = EXCHANGES[exchange]
    if exchange in SQUARE_OFF_BEFORE_CLOSE:
        close = datetime.combine(day, rules.session_end_on(day), tzinfo=rules.timezone)
        return close - SQUARE_OFF_BEFORE_CLOSE[exchange]
    return datetime.combine(day, SQUARE_OFF_TIMES[exchange], tzinfo=rules.timezone)


def _mis_positions(now: datetime, account_id: int | None = None):
    positions = PaperPosition.objects.filter(
        account__mode=TradingAccount.Mode.PAPER, product="MIS", exchange__in=list(SQUARE_OFF_EXCHANGES)
    ).exclude(quantity=0)
    if account_id is not None:
        positions = positions.filter(account_id=account_id)
    return [
        position
        for position in positions.select_related("account__user")
        if square_off_due(exchange=position.exchange, since=position.updated_at, now=now)
    ]


def _resting_mis_orders(account: TradingAccount, now: datetime) -> list[Order]:
    resting = account.orders.filter(
        status__in=RESTING_STATUSES, product="MIS", children__isnull=True, exchange__in=list(SQUARE_OFF_EXCHANGES)
    ).order_by("id")
    return [order for order in resting if square_off_due(exchange=order.exchange, since=order.created_at, now=now)]


def mis_positions_square_off(*, now: datetime | None = None, account_id: int | None = None) -> int:
    """Close every MIS position whose exchange's square-off time has passed (see the module doc) at its last
    fresh price, cancelling the account's resting MIS orders first. Returns how many positions were closed;
    one without a price is left for the next pass."""
    now = now or timezone.now()
    due = _mis_positions(now, account_id)
    resting = Order.objects.filter(
        account__mode=TradingAccount.Mode.PAPER,
        status__in=RESTING_STATUSES,
        product="MIS",
        children__isnull=True,
        exchange__in=list(SQUARE_OFF_EXCHANGES),
    )
    if account_id is not None:
        resting = resting.filter(account_id=account_id)
    # Only the accounts with something due are locked: a resting order placed today waits for its cut.
    accounts_with_orders = {
        order_account_id
        for order_account_id, exchange, created_at in resting.values_list("account_id", "exchange", "created_at")
        if square_off_due(exchange=exchange, since=created_at, now=now)
    }
    wanted: dict[int, set[Key]] = defaultdict(set)
    tenant_of: dict[int, int] = {}
    for position in due:
        wanted[position.account.user.tenant_id].add((position.exchange, position.symbol))
        tenant_of[position.account_id] = position.account.user.tenant_id
    prices = {
        tenant_id: _tenant_prices(tenant_id, instruments, fresh=True) for tenant_id, instruments in wanted.items()
    }
    closed = 0
    for locked_id in sorted(set(tenant_of) | accounts_with_orders):
        with transaction.atomic():
            account = account_lock(account_id=locked_id, live=False)
            _cancel_resting(_resting_mis_orders(account, now), message="Intraday (MIS) square-off: session end.")
            tenant_prices = prices.get(account.user.tenant_id, {})
            for position in _mis_positions(now, locked_id):
                price = tenant_prices.get((position.exchange, position.symbol))
                if price is None:
                    logger.warning("MIS square-off of %s:%s waits for a price", position.exchange, position.symbol)
                    continue
                position_close(
                    account=account,
                    position=position,
                    price=price,
                    kind="squared_off",
                    tag="squareoff",
                    message=f"Intraday (MIS) square-off at the session's end at {price}.",
                    squared_off=True,
                )
                closed += 1
    return closed


# --- Expiry settlement ---------------------------------------------------------------------------------------


def underlying_of(*, exchange: str, name: str) -> Key | None:
    """Where a derivative's underlying is priced: its index, or the stock's cash listing; None on MCX."""
    if (exchange, name) in INDEX_UNDERLYINGS:
        return INDEX_UNDERLYINGS[(exchange, name)]
    cash = STOCK_EXCHANGE_OF.get(exchange)
    return (cash, name) if cash and name else None


def settlement_price(*, instrument_type: str, strike: Decimal, underlying_price: Decimal) -> Decimal:
    """The final settlement price: the underlying's for a future, the intrinsic value for an option."""
    if instrument_type == "CE":
        return max(underlying_price - strike, Decimal("0")).quantize(PRICE_STEP)
    if instrument_type == "PE":
        return max(strike - underlying_price, Decimal("0")).quantize(PRICE_STEP)
    return underlying_price.quantize(PRICE_STEP)


def _expired_contracts(keys: set[Key], now: datetime) -> dict[Key, tuple[str, Decimal, Key, date | None]]:
    """Of these contracts, the expired ones: each with its kind, strike, where its settlement is priced and its
    expiry day (the trade day of its settlement's charges)."""
    expired = {}
    for exchange, symbol in keys:
        rules = rules_instrument_get(exchange=exchange, symbol=symbol)
        listed = master_instrument_get(exchange=exchange, tradingsymbol=symbol)
        if rules is None or listed is None or not rules.expired_at(now):
            continue
        underlying = underlying_of(exchange=exchange, name=listed.name)
        if underlying is None and listed.instrument_type in OPTION_TYPES:
            future = underlying_future(exchange=exchange, name=listed.name, expiry=listed.expiry or now.date())
            if future is None:
                logger.warning("Expiry of %s:%s waits: the master lists no future under it", exchange, symbol)
                continue
            underlying = (exchange, future)
        expired[(exchange, symbol)] = (
            listed.instrument_type,
            listed.strike,
            underlying or (exchange, symbol),
            listed.expiry,
        )
    return expired


def expired_positions_settle(*, now: datetime | None = None) -> int:
    """Settle every open paper position in a contract past its expiry (see the module doc); returns how many
    were closed. Settlement takes the source's last price even when it is not fresh: after the close it is the
    close."""
    now = now or timezone.now()
    open_positions = PaperPosition.objects.filter(
        account__mode=TradingAccount.Mode.PAPER, exchange__in=DERIVATIVE_EXCHANGES
    ).exclude(quantity=0)
    keys = set(open_positions.values_list("exchange", "symbol").distinct())
    expired = _expired_contracts(keys, now)
    if not expired:
        return 0
    by_tenant: dict[int, set[Key]] = defaultdict(set)
    account_ids = set()
    for account_id, tenant_id, exchange, symbol in open_positions.values_list(
        "account_id", "account__user__tenant_id", "exchange", "symbol"
    ):
        if (exchange, symbol) in expired:
            by_tenant[tenant_id].add(expired[(exchange, symbol)][2])
            account_ids.add(account_id)
    prices = {tenant_id: _tenant_prices(tenant_id, wanted, fresh=False) for tenant_id, wanted in by_tenant.items()}
    settled = 0
    for locked_id in sorted(account_ids):
        with transaction.atomic():
            account = account_lock(account_id=locked_id, live=False)
            resting = account.orders.filter(status__in=RESTING_STATUSES, children__isnull=True).order_by("id")
            _cancel_resting(
                [order for order in resting if (order.exchange, order.symbol) in expired],
                message="The contract expired.",
            )
            for position in account.paper_positions.exclude(quantity=0).order_by("id"):
                contract = expired.get((position.exchange, position.symbol))
                if contract is None:
                    continue
                instrument_type, strike, underlying, expiry = contract
                underlying_price = prices.get(account.user.tenant_id, {}).get(underlying)
                if underlying_price is None:
                    logger.warning(
                        "Expiry of %s:%s waits for a price of %s:%s", position.exchange, position.symbol, *underlying
                    )
                    continue
                price = settlement_price(
                    instrument_type=instrument_type, strike=strike, underlying_price=underlying_price
                )
                position_close(
                    account=account,
                    position=position,
                    price=price,
                    kind="settled",
                    tag="expiry",
                    message=f"Settled at expiry at {price} ({underlying[0]}:{underlying[1]} at {underlying_price}).",
                    exercise=instrument_type in ("CE", "PE"),
                    on=expiry,
                )
                settled += 1
    return settled
