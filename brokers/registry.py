"""Which adapter speaks for a broker app or connection. Later brokers add one builder each."""

from brokers.adapters.base import BrokerAdapter
from brokers.adapters.kite import KiteAdapter
from brokers.models import BrokerApp, BrokerConnection, BrokerKind


def _kite(app: BrokerApp, connection: BrokerConnection | None) -> BrokerAdapter:
    return KiteAdapter(
        app_id=app.pk,
        api_key=app.api_key,
        api_secret=app.api_secret,
        access_token=connection.access_token if connection else "",
        market_protection=app.tenant.kite_market_protection,
    )


BUILDERS = {BrokerKind.KITE: _kite}


def adapter_for_app(app: BrokerApp) -> BrokerAdapter:
    """An adapter without a session: for the login URL and the token exchange."""
    return _build(app, None)


def adapter_for(connection: BrokerConnection, account_id: str = "") -> BrokerAdapter:
    """An adapter acting with the connection's tokens (for one of its broker accounts: Kite ignores it)."""
    return _build(connection.app, connection)


def _build(app: BrokerApp, connection: BrokerConnection | None) -> BrokerAdapter:
    try:
        builder = BUILDERS[app.kind]
    except KeyError:
        raise ValueError(f"No adapter for broker {app.kind!r}.") from None
    return builder(app, connection)
