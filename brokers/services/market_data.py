"""A tenant's market-data connection: the session on its shared Kite app that quotes and ticks go through.

In production a tenant admin links it by logging in through the tenant's app (`kite_tenant_app_connect_start`).
`market_data_connect` links one from a request token obtained elsewhere (the development seed and the tests log
in at the broker sandbox's Kite), under a user of its own: an inactive user of the tenant that nobody signs in
as, so the market-data session is nobody's trading account.
"""

from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.registry import adapter_for_app
from brokers.services.linking import connection_link_tokens
from identity.models import User

# The market-data user's address: `.invalid` never delivers (RFC 2606), and market.selectors prefers its session.
MARKET_DATA_EMAIL_SUFFIX = ".tenant.invalid"


def market_data_user(tenant) -> User:
    email = f"market-data@{tenant.slug}{MARKET_DATA_EMAIL_SUFFIX}"
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
