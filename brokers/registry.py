"""Which adapter speaks for a broker app or connection. Later brokers add one builder each."""

from collections.abc import Callable

from brokers import egress
from brokers.adapters import kite_limits, schwab
from brokers.adapters.base import BrokerAdapter
from brokers.adapters.kite import KiteAdapter
from brokers.adapters.schwab import SchwabAdapter
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from thor.ratelimit import Budget


def _kite(app: BrokerApp, connection: BrokerConnection | None, account_id: str) -> BrokerAdapter:
    # A Kite login is one account: `account_id` has nothing to choose.
    order_egress = egress.order_egress_for(connection) if connection else None
    return KiteAdapter(
        app_id=app.pk,
        api_key=app.api_key,
        api_secret=app.api_secret,
        access_token=connection.access_token if connection else "",
        market_protection=app.tenant.kite_market_protection,
        broker_user_id=connection.broker_user_id if connection else "",
        order_egress=order_egress.url if order_egress else "",
    )


def _schwab(app: BrokerApp, connection: BrokerConnection | None, account_id: str) -> BrokerAdapter:
    return SchwabAdapter(
        app_id=app.pk,
        client_id=app.api_key,
        client_secret=app.api_secret,
        redirect_uri=app.redirect_uri,
        access_token=connection.access_token if connection else "",
        refresh_token=connection.refresh_token if connection else "",
        account_hash=account_id,
    )


# Keyed by BrokerKind, read with a model's `kind` (a plain str).
BUILDERS: dict[str, Callable[[BrokerApp, BrokerConnection | None, str], BrokerAdapter]] = {
    BrokerKind.KITE: _kite,
    BrokerKind.SCHWAB: _schwab,
}
ADAPTERS: dict[str, type[BrokerAdapter]] = {BrokerKind.KITE: KiteAdapter, BrokerKind.SCHWAB: SchwabAdapter}


def keeps_client_order_id(kind: str) -> bool:
    """Does this broker keep Thor's client order id on its orders (paper: Thor is the broker)?"""
    adapter = ADAPTERS.get(kind)
    return adapter is None or adapter.keeps_client_order_id


def modifications_per_order(kind: str) -> int | None:
    """How many times this broker lets one order be modified (None: no limit, or paper)."""
    adapter = ADAPTERS.get(kind)
    return None if adapter is None else adapter.modifications_per_order


# The rate limits each broker's adapter spends, per app (read by brokers.health).
RATE_BUDGETS: dict[str, Callable[[int], list[Budget]]] = {
    BrokerKind.KITE: kite_limits.rate_budgets,
    BrokerKind.SCHWAB: schwab.rate_budgets,
}


def rate_budgets_for_app(kind: str, app_id: int) -> list[Budget]:
    budgets = RATE_BUDGETS.get(kind)
    return budgets(app_id) if budgets else []


def adapter_for_app(app: BrokerApp) -> BrokerAdapter:
    """An adapter without a session: for the login URL and the token exchange."""
    return _build(app, None, "")


def adapter_for(connection: BrokerConnection, account_id: str = "") -> BrokerAdapter:
    """An adapter acting with the connection's tokens; `account_id` is the TradingAccount's
    broker_account_id for brokers whose login holds several accounts (Schwab's hashValue)."""
    return _build(connection.app, connection, account_id)


def _build(app: BrokerApp, connection: BrokerConnection | None, account_id: str) -> BrokerAdapter:
    try:
        builder = BUILDERS[app.kind]
    except KeyError:
        raise ValueError(f"No adapter for broker {app.kind!r}.") from None
    return builder(app, connection, account_id)
