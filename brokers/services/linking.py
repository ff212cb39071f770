"""Linking a broker account: the login URL with its signed state, the callback, and confirmed links."""

import logging
import secrets
from collections.abc import Mapping
from dataclasses import asdict

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from rest_framework import status

from brokers import caches, oauth_state
from brokers.adapters.errors import BrokerError
from brokers.adapters.types import BrokerAccountRef, Tokens
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.registry import adapter_for_app
from brokers.signals import connection_linked
from identity.models import User
from thor.crypto import decrypt, encrypt
from thor.errors import ApplicationError
from thor.origins import origin_of

logger = logging.getLogger("thor.brokers")
Status = BrokerConnection.Status


def _frontend_origin(*, user: User, frontend_url: str | None) -> str:
    """The allow-listed origin the browser returns to; the tenant's first origin when none is given."""
    tenant = user.tenant
    if not frontend_url:
        if not tenant.allowed_origins:
            raise ApplicationError(
                "frontend_url is required.", code="origin_not_allowed", errors={"frontend_url": ["Required."]}
            )
        return tenant.allowed_origins[0]
    # The origin itself (a trailing slash is tolerated), never a longer URL: DESIGN.md section 4.
    origin = origin_of(frontend_url)
    if not tenant.allows_origin(frontend_url) or origin is None or frontend_url.rstrip("/") != origin:
        raise ApplicationError(
            "frontend_url is not an allowed origin for this tenant.",
            code="origin_not_allowed",
            errors={"frontend_url": ["Not an allowed origin."]},
        )
    return origin


def link_state_issue(*, user: User, app: BrokerApp, connection: BrokerConnection, origin: str) -> str:
    """The signed, single-use state of a flow that links `connection` for `user` and leads back to `origin`."""
    return oauth_state.issue(
        user_id=user.pk,
        tenant_slug=user.tenant.slug,
        app_id=app.pk,
        connection_id=connection.pk,
        frontend_origin=origin,
    )


def _authorization_url(*, user: User, app: BrokerApp, connection: BrokerConnection, origin: str) -> str:
    state = link_state_issue(user=user, app=app, connection=connection, origin=origin)
    return adapter_for_app(app).authorization_url(state)


def _pending_connection(*, user: User, app: BrokerApp) -> BrokerConnection:
    # The unique (user, app, broker_user_id) constraint keeps this to one unlinked row per app.
    connection, _ = BrokerConnection.objects.get_or_create(user=user, app=app, broker_user_id="")
    return connection


@transaction.atomic
def kite_user_app_connect_start(*, user: User, api_key: str, api_secret: str, frontend_url: str | None) -> str:
    """Seed 000's test-oauth: store the user's own Kite app and return its login URL."""
    origin = _frontend_origin(user=user, frontend_url=frontend_url)
    app, created = BrokerApp.objects.get_or_create(
        owner=user,
        kind=BrokerKind.KITE,
        api_key=api_key,
        defaults={"tenant": user.tenant, "api_secret": api_secret, "name": "Own Kite app"},
    )
    if not created and app.api_secret != api_secret:
        app.api_secret = api_secret
        app.save(update_fields=["api_secret", "updated_at"])
    connection = _pending_connection(user=user, app=app)
    return _authorization_url(user=user, app=app, connection=connection, origin=origin)


@transaction.atomic
def kite_tenant_app_connect_start(*, user: User, frontend_url: str | None) -> str:
    """The tenant's shared Kite app: return its login URL for this user."""
    origin = _frontend_origin(user=user, frontend_url=frontend_url)
    app = BrokerApp.objects.filter(tenant=user.tenant, owner__isnull=True, kind=BrokerKind.KITE).order_by("id").first()
    if app is None:
        raise ApplicationError(
            "This tenant has no Kite app.", code="no_kite_app", status_code=status.HTTP_404_NOT_FOUND
        )
    connection = _pending_connection(user=user, app=app)
    return _authorization_url(user=user, app=app, connection=connection, origin=origin)


def connection_reconnect_start(*, connection: BrokerConnection, frontend_url: str | None) -> str:
    """A new login URL whose callback repairs this same connection row."""
    origin = _frontend_origin(user=connection.user, frontend_url=frontend_url)
    return _authorization_url(user=connection.user, app=connection.app, connection=connection, origin=origin)


# --- Finishing the Kite OAuth flow ---------------------------------------------------------------


class CallbackFailed(Exception):
    """The callback could not link the account; `code` is the short code shown to the browser.

    `state` is the flow's signed state when it still says where the browser goes back to.
    """

    def __init__(self, code: str, *, state: oauth_state.OAuthState | None = None):
        super().__init__(code)
        self.code = code
        self.state = state


def kite_callback_complete(*, state: oauth_state.OAuthState, params: Mapping[str, str]) -> BrokerConnection:
    """Exchange the request token and link the account. The network call runs outside the transaction."""
    if state.purpose != oauth_state.LINK:
        # A market-data login's state never links a user's account (brokers.services.market_data_login).
        raise CallbackFailed("state_invalid")
    if params.get("status") != "success" or not params.get("request_token"):
        raise CallbackFailed("denied")
    user = User.objects.filter(pk=state.user_id, tenant__slug=state.tenant_slug, is_active=True).first()
    app = BrokerApp.objects.filter(pk=state.app_id, tenant__slug=state.tenant_slug, kind=BrokerKind.KITE).first()
    if user is None or app is None:
        raise CallbackFailed("state_invalid")
    try:
        tokens = adapter_for_app(app).exchange({"request_token": params["request_token"]})
    except BrokerError as error:
        logger.warning("Kite token exchange failed for app %s: %s", app.pk, error.code)
        raise CallbackFailed("exchange_failed") from None
    if user.tenant.broker_link_confirmation:
        raise LinkAwaitsConfirmation(link_park(user=user, app=app, started_id=state.connection_id, tokens=tokens))
    return _connection_link_or_fail(user=user, app=app, started_id=state.connection_id, tokens=tokens)


def _connection_link_or_fail(
    *,
    user: User,
    app: BrokerApp,
    started_id: int,
    tokens: Tokens,
    broker_accounts: list[BrokerAccountRef] | None = None,
) -> BrokerConnection:
    try:
        return _connection_link(
            user=user, app=app, started_id=started_id, tokens=tokens, broker_accounts=broker_accounts
        )
    except IntegrityError:
        # A concurrent callback linked the same Kite user first; its row stands.
        raise CallbackFailed("conflict") from None


def connection_link_tokens(*, user: User, app: BrokerApp, tokens: Tokens) -> BrokerConnection:
    """Store a Kite session obtained outside a linking flow (a Zerodha login); raises CallbackFailed."""
    return _connection_link_or_fail(user=user, app=app, started_id=0, tokens=tokens)


# --- Confirmed links: the browser that finishes the flow must be the user who started it ---------

LINK_CODE_SECONDS = 600


class LinkAwaitsConfirmation(Exception):
    """The tokens are parked under `code` until the signed-in user confirms the link."""

    def __init__(self, code: str):
        super().__init__("link awaits confirmation")
        self.code = code


def link_park(
    *,
    user: User,
    app: BrokerApp,
    started_id: int,
    tokens: Tokens,
    broker_accounts: list[BrokerAccountRef] | None = None,
) -> str:
    """Keep a finished login's session for `user` to confirm; returns the one-time code."""
    code = secrets.token_urlsafe(24)
    parked = {
        "user_id": user.pk,
        "app_id": app.pk,
        "started_id": started_id,
        # The accounts the login reads (a Schwab login's several), None for a Kite login (the user itself).
        "broker_accounts": None if broker_accounts is None else [asdict(ref) for ref in broker_accounts],
        "broker_user_id": tokens.broker_user_id,
        # The cache is not the encrypted store: the session travels encrypted.
        "access_token": encrypt(tokens.access_token),
        "refresh_token": encrypt(tokens.refresh_token) if tokens.refresh_token else "",
        "access_expires_at": tokens.access_expires_at,
        "refresh_expires_at": tokens.refresh_expires_at,
    }
    cache.set(caches.link_code_key(code), parked, LINK_CODE_SECONDS)
    return code


def connection_link_confirm(*, user: User, code: str) -> BrokerConnection:
    """Finish a parked link for the user who started it; the code works once, for that user only."""
    key = caches.link_code_key(code)
    parked = cache.get(key)
    if parked is None or parked["user_id"] != user.pk or not cache.delete(key):
        raise ApplicationError("Unknown or expired link code.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
    app = BrokerApp.objects.get(pk=parked["app_id"])
    tokens = Tokens(
        access_token=decrypt(parked["access_token"]),
        refresh_token=decrypt(parked["refresh_token"]) if parked["refresh_token"] else "",
        access_expires_at=parked["access_expires_at"],
        refresh_expires_at=parked["refresh_expires_at"],
        broker_user_id=parked["broker_user_id"],
    )
    refs = parked.get("broker_accounts")
    broker_accounts = None if refs is None else [BrokerAccountRef(**ref) for ref in refs]
    try:
        return _connection_link_or_fail(
            user=user, app=app, started_id=parked["started_id"], tokens=tokens, broker_accounts=broker_accounts
        )
    except CallbackFailed as failure:
        raise ApplicationError("The account was linked by another request.", code=failure.code) from None


def _trading_enabled_on_first_link(app: BrokerApp) -> bool:
    # Live brokers start with trading off (DESIGN.md section 2); the sandboxes start with it on.
    if app.kind == BrokerKind.SCHWAB:
        return not settings.PRODUCTION and not settings.THOR_SCHWAB_API_BASE.startswith("https://api.schwabapi.com")
    return settings.THOR_KITE_IS_SANDBOX


def _kite_accounts(tokens: Tokens) -> list[BrokerAccountRef]:
    # A Kite login is one account: the user itself.
    return [BrokerAccountRef(broker_account_id=tokens.broker_user_id, account_number="")]


@transaction.atomic
def _connection_link(
    *, user: User, app: BrokerApp, started_id: int, tokens: Tokens, broker_accounts: list[BrokerAccountRef] | None
) -> BrokerConnection:
    existing = (
        BrokerConnection.objects.select_for_update()
        .filter(user=user, app=app, broker_user_id=tokens.broker_user_id)
        .first()
    )
    started = BrokerConnection.objects.select_for_update().filter(pk=started_id, user=user, app=app).first()
    unlinked = started if started and not started.broker_user_id else None
    if existing is not None:
        connection = existing
        if unlinked is not None:
            unlinked.delete()  # the flow found an already linked Kite user: repair that row instead
    else:
        connection = unlinked or BrokerConnection(user=user, app=app)
    if not connection.broker_user_id:
        # A first link: a relink keeps whatever the tenant chose since.
        connection.trading_enabled = _trading_enabled_on_first_link(app)
    connection.broker_user_id = tokens.broker_user_id
    connection.access_token = tokens.access_token
    connection.refresh_token = tokens.refresh_token
    connection.access_expires_at = tokens.access_expires_at
    connection.refresh_expires_at = tokens.refresh_expires_at
    connection.status = Status.ACTIVE
    connection.last_error = ""
    connection.save()
    connection_linked.send(
        sender=BrokerConnection,
        connection=connection,
        broker_accounts=broker_accounts if broker_accounts is not None else _kite_accounts(tokens),
    )
    return connection
