"""Reads, always scoped by the user: accounts, orders, and positions, holdings and funds for any broker."""

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connections, router
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts import live
from accounts.models import Order, PaperPosition, TradingAccount
from accounts.paper import reserved_cash
from accounts.prices import price_source
from brokers.adapters.types import Funds, Holding, Position
from brokers.models import BrokerConnection
from identity.models import Tenant, User
from thor.money import CENT
from thor.snapshots import LiveRead, Present

PRIMARY = "primary"
# ASCII digits only: str.isdigit() also accepts "²" and "٣", which int() refuses. 18 digits fit a bigint.
ACCOUNT_ID = re.compile(r"[0-9]{1,18}")


def primary_account_get(*, user) -> TradingAccount | None:
    return TradingAccount.objects.filter(user=user, is_primary=True).select_related("connection__app").first()


def account_list(*, user) -> QuerySet[TradingAccount]:
    return TradingAccount.objects.filter(user=user).select_related("connection__app", "user__tenant").order_by("id")


def account_get(*, user, account_ref: str) -> TradingAccount:
    """The user's account by Thor id or the alias `primary`; anyone else's is a 404."""
    return _account_by_ref(account_list(user=user), account_ref)


def _read_sql() -> str:
    # Built once from the models' own names; the only values are the %s parameters.
    account = ", ".join(f'a."{field.column}"' for field in TradingAccount._meta.concrete_fields)
    connection = 'c."id", c."user_id", c."app_id", c."status", c."access_expires_at"'
    tables = (
        f'"{TradingAccount._meta.db_table}" a '
        f'INNER JOIN "{User._meta.db_table}" u ON u."id" = a."user_id" '
        f'INNER JOIN "{Tenant._meta.db_table}" t ON t."id" = u."tenant_id" '
        f'LEFT OUTER JOIN "{BrokerConnection._meta.db_table}" c ON c."id" = a."connection_id"'
    )
    select = f'SELECT {account}, {connection}, t."id", t."slug" FROM {tables}'  # noqa: S608
    return select + ' WHERE a."user_id" = %s AND {condition} ORDER BY a."id" LIMIT 1'


_READ_SQL = {
    PRIMARY: _read_sql().format(condition='a."is_primary"'),
    "id": _read_sql().format(condition='a."id" = %s'),
}
_ACCOUNT_FIELDS = [field.attname for field in TradingAccount._meta.concrete_fields]
_CONNECTION_FIELDS = ["id", "user_id", "app_id", "status", "access_expires_at"]


def account_for_read_get(*, user, account_ref: str) -> TradingAccount:
    """account_get for the live reads: the same account (or 404), with only what a read from the cache uses.

    Its columns, its session's state and its tenant's slug (the cache key): not the broker app, the encrypted
    tokens nor the user's and tenant's other columns, which only a call to the broker needs (loaded then, on
    first use, as Django loads deferred fields). One fixed SQL statement: building the ORM's three-join query
    was most of a cached read's time.
    """
    if account_ref == PRIMARY:
        sql, params = _READ_SQL[PRIMARY], [user.pk]
    elif ACCOUNT_ID.fullmatch(account_ref):
        sql, params = _READ_SQL["id"], [user.pk, int(account_ref)]
    else:
        raise Http404
    database = router.db_for_read(TradingAccount)
    with connections[database].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise Http404
    split = len(_ACCOUNT_FIELDS)
    account = TradingAccount.from_db(database, _ACCOUNT_FIELDS, row[:split])
    connection_row, (tenant_id, tenant_slug) = row[split : split + 5], row[split + 5 :]
    if connection_row[0] is not None:
        account.connection = BrokerConnection.from_db(database, _CONNECTION_FIELDS, connection_row)
    owner = User.from_db(database, ["id", "tenant_id"], [account.user_id, tenant_id])
    owner.tenant = Tenant.from_db(database, ["id", "slug"], [tenant_id, tenant_slug])
    account.user = owner
    return account


def _account_by_ref(accounts: QuerySet[TradingAccount], account_ref: str) -> TradingAccount:
    if account_ref == PRIMARY:
        account = accounts.filter(is_primary=True).first()
    elif ACCOUNT_ID.fullmatch(account_ref):
        account = accounts.filter(pk=int(account_ref)).first()
    else:
        account = None
    if account is None:
        raise Http404
    return account


def account_status(account: TradingAccount) -> str:
    if account.mode == TradingAccount.Mode.PAPER:
        return "active"
    return account.connection.status if account.connection else "revoked"


def order_list(
    *,
    account: TradingAccount,
    status: str | None = None,
    symbol: str | None = None,
    side: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> QuerySet[Order]:
    orders = account.orders.all()
    if status:
        orders = orders.filter(status=status)
    if symbol:
        orders = orders.filter(symbol=symbol)
    if side:
        orders = orders.filter(side=side)
    if created_from:
        orders = orders.filter(created_at__gte=created_from)
    if created_to:
        orders = orders.filter(created_at__lt=created_to)
    return orders


def order_get(*, account: TradingAccount, order_id: int) -> Order:
    order = account.orders.filter(pk=order_id).first()
    if order is None:
        raise Http404
    return order


def _now_read(data, source: str = "live", as_of: datetime | None = None) -> LiveRead:
    # Paper numbers come straight from the database; only their market prices can be old (see _paper_positions).
    return LiveRead(data=data, source=source, as_of=as_of or timezone.now())


@dataclass(frozen=True)
class _PaperValuation:
    positions: list[tuple[PaperPosition, Decimal]]  # each with the price it is valued at
    source: str  # live | stale
    as_of: datetime  # when the oldest price used was quoted


def _paper_positions(account: TradingAccount) -> _PaperValuation:
    """The account's positions at market prices: `live` only when every price that matters is fresh.

    A position without a price is valued at its average price, as of its last fill, and the read says `stale`:
    a made-up price must never pass for a live one. A closed position's value does not depend on a price.
    """
    positions = list(account.paper_positions.all())
    prices = price_source(tenant=account.user.tenant).prices({(p.exchange, p.symbol) for p in positions})
    now = timezone.now()
    valued, source, as_of = [], "live", now
    for position in positions:
        instrument = (position.exchange, position.symbol)
        if instrument in prices:
            valued.append((position, prices[instrument]))
            priced_at, fresh = prices.as_of_for(instrument), prices.is_fresh(instrument, now=now)
        else:
            valued.append((position, position.average_price))
            priced_at, fresh = position.updated_at, False
        if position.quantity:
            source = source if fresh else "stale"
            as_of = min(as_of, priced_at)
    return _PaperValuation(valued, source, as_of)


def _paper_position(position: PaperPosition, last_price: Decimal) -> Position:
    unrealised = ((last_price - position.average_price) * position.quantity).quantize(CENT)
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
        value=(position.quantity * last_price).quantize(CENT),
    )


def positions_get(*, account: TradingAccount, fresh: bool = False, present: Present | None = None) -> LiveRead:
    if account.mode == TradingAccount.Mode.LIVE:
        return live.live_read(
            account=account, what="positions", call=lambda adapter: adapter.positions(), force=fresh, present=present
        )
    valuation = _paper_positions(account)
    return _now_read(
        [_paper_position(position, price) for position, price in valuation.positions], valuation.source, valuation.as_of
    )


def holdings_get(*, account: TradingAccount, fresh: bool = False, present: Present | None = None) -> LiveRead:
    """Paper holdings are the CNC longs."""
    if account.mode == TradingAccount.Mode.LIVE:
        return live.live_read(
            account=account, what="holdings", call=lambda adapter: adapter.holdings(), force=fresh, present=present
        )
    valuation = _paper_positions(account)
    holdings = [
        Holding(
            symbol=position.symbol,
            exchange=position.exchange,
            quantity=position.quantity,
            average_price=position.average_price,
            last_price=price,
            pnl=((price - position.average_price) * position.quantity).quantize(CENT),
            day_change=Decimal("0"),
            value=(position.quantity * price).quantize(CENT),
        )
        for position, price in valuation.positions
        if position.product == "CNC" and position.quantity > 0
    ]
    return _now_read(holdings, valuation.source, valuation.as_of)


def funds_get(*, account: TradingAccount, fresh: bool = False, present: Present | None = None) -> LiveRead:
    if account.mode == TradingAccount.Mode.LIVE:
        return live.live_read(
            account=account, what="funds", call=lambda adapter: adapter.funds(), force=fresh, present=present
        )
    reserved = reserved_cash(account=account)
    valuation = _paper_positions(account)
    market_value = sum((p.quantity * price for p, price in valuation.positions), Decimal("0"))
    available = account.cash - reserved
    return _now_read(
        Funds(
            currency=account.currency,
            cash=account.cash,
            available=available,
            utilised=reserved,
            buying_power=available,
            net_liquidation=(account.cash + market_value).quantize(CENT),
        ),
        valuation.source,
        valuation.as_of,
    )
