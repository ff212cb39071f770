"""Linking a Schwab login (seed 002): the authorize URL with its signed state, and the callback.

The callback comes two ways and both end in `schwab_callback_complete`: the SPA's
`/schwab/callback` page relays `code` (and `state`) with the user's Bearer JWT, or Schwab sends the
browser straight to the backend. Seed 002's page relays only `code`; the state of the flow the same
signed-in user started in the last ten minutes then stands in for it, so a code from someone
else's flow is never attached to this user. A tenant with `broker_link_confirmation` has a browser
that came straight back (no Bearer, so possibly someone a login link was forwarded to) park the link
for its user to confirm, as Kite's callback does; the relay's Bearer is that confirmation already.
"""

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from rest_framework import status

from brokers import caches, oauth_state
from brokers.adapters.errors import BrokerError
from brokers.adapters.schwab import SchwabAdapter
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.registry import adapter_for, adapter_for_app
from brokers.services.linking import (
    CallbackFailed,
    LinkAwaitsConfirmation,
    _connection_link_or_fail,
    _frontend_origin,
    _pending_connection,
    link_park,
    link_state_issue,
)
from identity.models import User
from thor.errors import ApplicationError

logger = logging.getLogger("thor.brokers")

# Schwab's codes are about 100 characters; anything far longer is not one.
MAX_CODE_LENGTH = 1000


def schwab_app_for(tenant) -> BrokerApp:
    app = BrokerApp.objects.filter(tenant=tenant, owner__isnull=True, kind=BrokerKind.SCHWAB).order_by("id").first()
    if app is None:
        raise ApplicationError(
            "This tenant has no Schwab app.", code="no_schwab_app", status_code=status.HTTP_404_NOT_FOUND
        )
    return app


@transaction.atomic
def schwab_connect_start(*, user: User, frontend_url: str | None = None) -> str:
    """The Schwab authorize URL for this user through the tenant's Schwab app."""
    origin = _frontend_origin(user=user, frontend_url=frontend_url)
    app = schwab_app_for(user.tenant)
    connection = _pending_connection(user=user, app=app)
    state = link_state_issue(user=user, app=app, connection=connection, origin=origin)
    # Seed 002's callback page relays only the code: remember which flow this user started.
    cache.set(caches.schwab_started_flow_key(user.pk), state, settings.THOR_OAUTH_STATE_MAX_AGE)
    return adapter_for_app(app).authorization_url(state)


def schwab_state_consume(*, state_token: str, user: User | None) -> oauth_state.OAuthState:
    """The flow's state, once. Without a state, the latest flow `user` (signed in) started.

    Raises CallbackFailed: `state_expired` or `state_used` (with the state as signed), else `state_invalid`
    for a forged or foreign state.
    """
    if not state_token and user is not None:
        state_token = cache.get(caches.schwab_started_flow_key(user.pk)) or ""
    try:
        state = oauth_state.consume(state_token)
    except oauth_state.StateInvalid as invalid:
        if user is not None and invalid.state is not None and invalid.state.user_id != user.pk:
            raise CallbackFailed("state_invalid") from None
        raise CallbackFailed(invalid.code, state=invalid.state) from None
    if user is not None:
        cache.delete(caches.schwab_started_flow_key(user.pk))
        if state.user_id != user.pk or state.purpose != oauth_state.LINK:
            # A signed-in user relaying a flow someone else started: never attach it to either of them. A
            # market-data login finishes only in the operator's browser (it goes back to the admin).
            raise CallbackFailed("state_invalid")
    return state


def schwab_callback_complete(*, state: oauth_state.OAuthState, code: str, by_its_user: bool) -> BrokerConnection:
    """Exchange the code, read the accounts behind the login, then link them in one transaction.

    Both network calls run before the transaction; raises CallbackFailed with a short code. A tenant
    with `broker_link_confirmation` gets the link parked (LinkAwaitsConfirmation) as Kite's is, unless
    `by_its_user`: the SPA relayed it with the Bearer of the user who started the flow.
    """
    if state.purpose != oauth_state.LINK:
        # A market-data login's state never links a user's account (brokers.services.market_data_login).
        raise CallbackFailed("state_invalid")
    if not code:
        raise CallbackFailed("missing_code")
    if len(code) > MAX_CODE_LENGTH:
        raise CallbackFailed("invalid_code")
    user = User.objects.filter(pk=state.user_id, tenant__slug=state.tenant_slug, is_active=True).first()
    app = BrokerApp.objects.filter(pk=state.app_id, tenant__slug=state.tenant_slug, kind=BrokerKind.SCHWAB).first()
    if user is None or app is None:
        raise CallbackFailed("state_invalid")
    try:
        tokens = adapter_for_app(app).exchange({"code": code})
    except BrokerError as error:
        logger.warning("Schwab code exchange failed for app %s: %s", app.pk, error.code)
        raise CallbackFailed("exchange_failed") from None
    # Not saved: an adapter acting with the new tokens before any row holds them.
    unsaved = BrokerConnection(user=user, app=app, access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    try:
        adapter = adapter_for(unsaved)
        assert isinstance(adapter, SchwabAdapter)  # the app is a Schwab one
        broker_accounts = adapter.account_numbers()
    except BrokerError as error:
        logger.warning("Schwab accounts unreadable after linking for app %s: %s", app.pk, error.code)
        raise CallbackFailed("accounts_unavailable") from None
    if user.tenant.broker_link_confirmation and not by_its_user:
        # Whoever's browser finished the login may not be the user who started it (a forwarded link).
        raise LinkAwaitsConfirmation(
            link_park(
                user=user, app=app, started_id=state.connection_id, tokens=tokens, broker_accounts=broker_accounts
            )
        )
    return _connection_link_or_fail(
        user=user, app=app, started_id=state.connection_id, tokens=tokens, broker_accounts=broker_accounts
    )
