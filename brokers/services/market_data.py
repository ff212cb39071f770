"""A tenant's market-data connections: the sessions on its shared Kite app (Indian instruments) and on its
shared Schwab app (US ones) that quotes and ticks go through (market.quotes, market.ticks).

In production an operator logs them in from the admin or with `manage.py market_data_login`
(brokers.services.market_data_login: a signed state that the link callbacks hand there). `market_data_connect`
and `schwab_market_data_connect` link one from a Kite request token or a Schwab authorization code (from that
login, the development seed, or the tests at the broker sandbox), under a user of its own: an inactive user of
the tenant that nobody signs in as, the same for both brokers, so a market-data session is nobody's trading account.

The session a login links is the one market data uses: a login as another broker user (another Kite user id,
another Schwab login) ends that user's other sessions on the app (`superseded`: expired, tokens wiped, the row
kept), in the transaction that links it; market.selectors would otherwise keep preferring the old row for its
more recent sync. A login as the same broker user renews the same row.
"""

import logging
from collections.abc import Callable

from django.db import transaction

from brokers.adapters.schwab import SchwabAdapter
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.registry import adapter_for, adapter_for_app
from brokers.services.connections import connection_mark_expired
from brokers.services.linking import _connection_link_or_fail, connection_link_tokens
from identity.models import User

logger = logging.getLogger("thor.brokers")

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
    user = market_data_user(app.tenant)
    return _link_in_place_of_others(user, lambda: connection_link_tokens(user=user, app=app, tokens=tokens))


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
    return _link_in_place_of_others(
        user,
        lambda: _connection_link_or_fail(
            user=user, app=app, started_id=0, tokens=tokens, broker_accounts=broker_accounts
        ),
    )


# Why a market-data session ended: another login of the app replaced it.
SUPERSEDED = "superseded"


def _link_in_place_of_others(user: User, link: Callable[[], BrokerConnection]) -> BrokerConnection:
    """`link()` (no broker call: those are done), then end the app's other active sessions of the market-data
    user, in one transaction; each is ended by connection_mark_expired, which announces it once committed so no
    cache keeps serving the old session."""
    with transaction.atomic():
        # The market-data user's row is held until the commit: two logins at once as two broker users would
        # otherwise each end the other's session before either committed, and leave both active.
        User.objects.select_for_update().filter(pk=user.pk).first()
        connection = link()
        _others_end(connection)
    return connection


def _others_end(connection: BrokerConnection) -> None:
    others = (
        BrokerConnection.objects.filter(user=connection.user, app=connection.app, status=BrokerConnection.Status.ACTIVE)
        .exclude(pk=connection.pk)
        .select_related("app")
    )
    for other in others:
        connection_mark_expired(connection=other, error_code=SUPERSEDED)
        logger.info(
            "Market-data session %s of app %s ended: login %s replaced it", other.pk, connection.app_id, connection.pk
        )
