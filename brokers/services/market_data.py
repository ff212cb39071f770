"""A tenant's market-data connections: the sessions on its shared Kite app (Indian instruments) and on its
shared Schwab app (US ones) that quotes and ticks go through (market.quotes, market.ticks).

In production an operator logs them in from the admin or with `manage.py market_data_login`
(brokers.services.market_data_login: a signed state that the link callbacks hand there). `market_data_connect`
and `schwab_market_data_connect` link one from a Kite request token or a Schwab authorization code (from that
login, the development seed, or the tests at the broker sandbox), under a user of its own: an inactive user of
the tenant that nobody signs in as, the same for both brokers, so a market-data session is nobody's trading account.
"""

from brokers.adapters.schwab import SchwabAdapter
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.registry import adapter_for, adapter_for_app
from brokers.services.linking import _connection_link_or_fail, connection_link_tokens
from identity.models import User

# The market-data user's address: `.invalid` never delivers (RFC 2606), and market.selectors prefers its session.
MARKET_DATA_EMAIL_SUFFIX = ".tenant.invalid"


def market_data_email(tenant) -> str:
    return f"market-data@{tenant.slug}{MARKET_DATA_EMAIL_SUFFIX}"


def market_data_user(tenant) -> User:
    email = market_data_email(tenant)
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(email, password=None, tenant=tenant, is_active=False)
    return user


def market_data_connect(*, app: BrokerApp, request_token: str) -> BrokerConnection:
    """Exchange the request token at the tenant's shared Kite app and link the session as its market-data
    connection; raises BrokerError when the broker refuses the token."""
    if app.kind != BrokerKind.KITE or app.owner_id is not None:
        raise ValueError("Market data comes through a tenant's shared Kite app.")
    tokens = adapter_for_app(app).exchange({"request_token": request_token})
    return connection_link_tokens(user=market_data_user(app.tenant), app=app, tokens=tokens)


def schwab_market_data_connect(*, app: BrokerApp, code: str) -> BrokerConnection:
    """Exchange the authorization code at the tenant's shared Schwab app and link the login as its Schwab
    market-data connection (its accounts read as a Schwab link reads them, so a relink finds the same rows);
    raises BrokerError when Schwab refuses the code or the accounts cannot be read."""
    if app.kind != BrokerKind.SCHWAB or app.owner_id is not None:
        raise ValueError("US market data comes through a tenant's shared Schwab app.")
    tokens = adapter_for_app(app).exchange({"code": code})
    user = market_data_user(app.tenant)
    # Not saved: an adapter acting with the new tokens before any row holds them.
    unsaved = BrokerConnection(user=user, app=app, access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    adapter = adapter_for(unsaved)
    assert isinstance(adapter, SchwabAdapter)  # the app is a Schwab one
    broker_accounts = adapter.account_numbers()
    return _connection_link_or_fail(user=user, app=app, started_id=0, tokens=tokens, broker_accounts=broker_accounts)
