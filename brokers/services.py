"""Writes for broker apps and connections, and the guard around every broker call."""

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from accounts.models import Order, OrderEvent, TradingAccount
from brokers import oauth_state
from brokers.adapters.base import BrokerAdapter
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.kite import postback_checksum
from brokers.adapters.types import Tokens
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.registry import adapter_for, adapter_for_app
from identity.models import User
from thor.crypto import decrypt, encrypt
from thor.errors import ApplicationError
from thor.origins import origin_of

logger = logging.getLogger("thor.brokers")
T = TypeVar("T")
QUANTITY_STEP = Decimal("0.0001")  # the scale of Order's decimal columns
Status = BrokerConnection.Status


# --- The guard every broker call goes through -------------------------------------------------


def broker_call(connection: BrokerConnection, call: Callable[[BrokerAdapter], T]) -> T:
    """`call(adapter)` for this connection, keeping the connection's status honest.

    A connection that is not active, or whose session is past its expiry, raises a permanent
    TOKEN_EXPIRED BrokerError without calling the broker (the API answers 409 reauth_required);
    a TOKEN_EXPIRED from the broker marks the connection expired first. Success records the sync.
    Not atomic on purpose: no transaction stays open across a network call.
    """
    connection_require_active(connection)
    try:
        result = call(adapter_for(connection))
    except BrokerError as error:
        if error.code == BrokerErrorCode.TOKEN_EXPIRED:
            connection_mark_expired(connection=connection)
        else:
            BrokerConnection.objects.filter(pk=connection.pk).update(last_error=error.code.value)
        raise
    BrokerConnection.objects.filter(pk=connection.pk).update(last_sync_at=timezone.now(), last_error="")
    return result


# --- Connection lifecycle ----------------------------------------------------------------------


def connection_require_active(connection: BrokerConnection) -> None:
    """Raise a permanent TOKEN_EXPIRED BrokerError unless the session is usable; a session past its
    expiry is marked expired on the way."""
    if (
        connection.status == Status.ACTIVE
        and connection.access_expires_at
        and connection.access_expires_at <= timezone.now()
    ):
        connection_mark_expired(connection=connection)
    if connection.status != Status.ACTIVE:
        raise BrokerError(
            "The broker session has ended; link the account again.", code=BrokerErrorCode.TOKEN_EXPIRED, permanent=True
        )


@transaction.atomic
def connection_mark_expired(*, connection: BrokerConnection, error_code: str = "token_expired") -> None:
    """The session is dead at the broker: forget its tokens so the user is asked to link again."""
    BrokerConnection.objects.filter(pk=connection.pk, status=Status.ACTIVE).update(
        status=Status.EXPIRED, last_error=error_code, access_token="", updated_at=timezone.now()
    )
    connection.refresh_from_db()


def connection_revoke(*, connection: BrokerConnection) -> None:
    """End the session at the broker where it can, then wipe the tokens; the row stays as the audit.

    The broker call is best effort (the user's wish to unlink wins) and runs outside any transaction.
    """
    if connection.access_token and connection.status == Status.ACTIVE:
        try:
            adapter_for(connection).revoke()
        except BrokerError as error:
            logger.warning("Could not end broker session of connection %s: %s", connection.pk, error.code)
    BrokerConnection.objects.filter(pk=connection.pk).update(
        status=Status.REVOKED, access_token="", refresh_token="", last_error="", updated_at=timezone.now()
    )
    connection.refresh_from_db()


def kite_sessions_expire(*, now: datetime | None = None) -> int:
    """Mark every Kite session past its 06:00 IST end as expired; returns how many."""
    now = now or timezone.now()
    return BrokerConnection.objects.filter(
        app__kind=BrokerKind.KITE, status=Status.ACTIVE, access_expires_at__lte=now
    ).update(status=Status.EXPIRED, last_error="session_expired", access_token="", updated_at=now)


# --- Starting an OAuth flow -------------------------------------------------------------------


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
    if not tenant.allows_origin(frontend_url) or frontend_url.rstrip("/") != origin_of(frontend_url):
        raise ApplicationError(
            "frontend_url is not an allowed origin for this tenant.",
            code="origin_not_allowed",
            errors={"frontend_url": ["Not an allowed origin."]},
        )
    return origin_of(frontend_url)


def _authorization_url(*, user: User, app: BrokerApp, connection: BrokerConnection, origin: str) -> str:
    state = oauth_state.issue(
        user_id=user.pk,
        tenant_slug=user.tenant.slug,
        app_id=app.pk,
        connection_id=connection.pk,
        frontend_origin=origin,
    )
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
    """The callback could not link the account; `code` is the short code shown to the browser."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def kite_callback_complete(*, state: oauth_state.OAuthState, params: Mapping[str, str]) -> BrokerConnection:
    """Exchange the request token and link the account. The network call runs outside the transaction."""
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
        raise LinkAwaitsConfirmation(_link_park(user=user, app=app, started_id=state.connection_id, tokens=tokens))
    return _connection_link_or_fail(user=user, app=app, started_id=state.connection_id, tokens=tokens)


def _connection_link_or_fail(*, user: User, app: BrokerApp, started_id: int, tokens: Tokens) -> BrokerConnection:
    try:
        return _connection_link(user=user, app=app, started_id=started_id, tokens=tokens)
    except IntegrityError:
        # A concurrent callback linked the same Kite user first; its row stands.
        raise CallbackFailed("conflict") from None


# --- Confirmed links: the browser that finishes the flow must be the user who started it ---------

LINK_CODE_SECONDS = 600


class LinkAwaitsConfirmation(Exception):
    """The tokens are parked under `code` until the signed-in user confirms the link."""

    def __init__(self, code: str):
        super().__init__("link awaits confirmation")
        self.code = code


def _link_code_key(code: str) -> str:
    return f"broker-link-code:{hashlib.sha256(code.encode()).hexdigest()}"


def _link_park(*, user: User, app: BrokerApp, started_id: int, tokens: Tokens) -> str:
    code = secrets.token_urlsafe(24)
    parked = {
        "user_id": user.pk,
        "app_id": app.pk,
        "started_id": started_id,
        "broker_user_id": tokens.broker_user_id,
        # The cache is not the encrypted store: the session travels encrypted.
        "access_token": encrypt(tokens.access_token),
        "refresh_token": encrypt(tokens.refresh_token) if tokens.refresh_token else "",
        "access_expires_at": tokens.access_expires_at,
        "refresh_expires_at": tokens.refresh_expires_at,
    }
    cache.set(_link_code_key(code), parked, LINK_CODE_SECONDS)
    return code


def connection_link_confirm(*, user: User, code: str) -> BrokerConnection:
    """Finish a parked link for the user who started it; the code works once, for that user only."""
    key = _link_code_key(code)
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
    try:
        return _connection_link_or_fail(user=user, app=app, started_id=parked["started_id"], tokens=tokens)
    except CallbackFailed as failure:
        raise ApplicationError("The account was linked by another request.", code=failure.code) from None


@transaction.atomic
def _connection_link(*, user: User, app: BrokerApp, started_id: int, tokens: Tokens) -> BrokerConnection:
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
        connection.trading_enabled = settings.THOR_KITE_IS_SANDBOX
    connection.broker_user_id = tokens.broker_user_id
    connection.access_token = tokens.access_token
    connection.refresh_token = tokens.refresh_token
    connection.access_expires_at = tokens.access_expires_at
    connection.refresh_expires_at = tokens.refresh_expires_at
    connection.status = Status.ACTIVE
    connection.last_error = ""
    connection.save()
    TradingAccount.objects.update_or_create(
        connection=connection,
        broker_account_id=tokens.broker_user_id,
        defaults={"user": user, "mode": TradingAccount.Mode.LIVE},
        create_defaults={
            "user": user,
            "mode": TradingAccount.Mode.LIVE,
            "display_name": f"Zerodha {tokens.broker_user_id}",
            "currency": "INR",
            "is_primary": False,
        },
    )
    return connection


# --- Kite postbacks ---------------------------------------------------------------------------


def _checksum_matches(update: Mapping, app: BrokerApp) -> bool:
    expected = postback_checksum(
        order_id=update["order_id"], order_timestamp=update["order_timestamp"], api_secret=app.api_secret
    )
    return hmac.compare_digest(expected.encode(), update["checksum"].encode())


def _order_from_postback(account: TradingAccount, update: Mapping) -> Order:
    order, _ = Order.objects.get_or_create(
        account=account,
        broker_order_id=update["order_id"],
        defaults={
            "client_order_id": f"kite-{update['order_id']}"[:40],
            "symbol": update["tradingsymbol"],
            "exchange": update["exchange"],
            "side": update["transaction_type"],
            "quantity": update["quantity"].quantize(QUANTITY_STEP),
            "order_type": update["order_type"],
            "product": update["product"],
            "price": update["price"].quantize(QUANTITY_STEP) if update["price"] else None,
            "trigger_price": update["trigger_price"].quantize(QUANTITY_STEP) if update["trigger_price"] else None,
            "validity": update["validity"] or "DAY",
            "tag": update["tag"],
        },
    )
    return order


def _order_awaiting_its_id(account: TradingAccount, update: Mapping) -> Order | None:
    """Thor's own order, sent with its client order id as the tag, whose placement answer is still
    on its way: Kite often posts the fill back first. It takes the broker's id here."""
    if not update["tag"]:
        return None
    order = (
        Order.objects.select_for_update()
        .filter(account=account, client_order_id=update["tag"], broker_order_id="")
        .first()
    )
    if order is not None:
        order.broker_order_id = update["order_id"]
        order.save(update_fields=["broker_order_id", "updated_at"])
    return order


def _order_for_postback(update: Mapping) -> Order | None:
    """The order the postback is about, authenticated by its app's secret; raises on a forgery.

    A known order is checked against its own app only, so one app cannot update another's orders.
    An order Thor has not seen is accepted when an app linked to the postback's Kite user signs it.
    """
    known = Order.objects.filter(
        broker_order_id=update["order_id"], account__connection__app__kind=BrokerKind.KITE
    ).select_related("account__connection__app")
    if known:
        for order in known:
            if _checksum_matches(update, order.account.connection.app):
                return order
        raise ApplicationError("Postback checksum does not match.", code="checksum_invalid")

    connections = BrokerConnection.objects.filter(
        app__kind=BrokerKind.KITE, broker_user_id=update["user_id"]
    ).select_related("app")
    for connection in connections:
        if _checksum_matches(update, connection.app):
            account = TradingAccount.objects.filter(connection=connection, mode=TradingAccount.Mode.LIVE).first()
            if account is None:
                return None
            return _order_awaiting_its_id(account, update) or _order_from_postback(account, update)
    raise ApplicationError("Postback checksum does not match.", code="checksum_invalid")


def _order_state(order: Order) -> dict:
    return {
        "status": order.status,
        "broker_status": order.raw.get("status", ""),
        "filled_quantity": str(order.filled_quantity),
        "average_price": None if order.average_price is None else str(order.average_price),
    }


def _postback_is_stale(order: Order, update: Mapping) -> bool:
    """A repeat, or an update older than what Thor holds: postbacks may arrive twice and out of order.

    Kite's checksum signs only the order id and timestamp, so the status and fill fields are
    never allowed to move an order backwards: no fill shrinks, and a finished order stays finished.
    """
    status, filled = update["status"], update["filled_quantity"]
    repeated = order.raw.get("status") == status and order.filled_quantity == filled
    fill_shrinks = filled < order.filled_quantity
    reopens_or_refinishes = order.is_terminal and status != order.status
    return repeated or fill_shrinks or reopens_or_refinishes


@transaction.atomic
def kite_postback_apply(*, update: Mapping, payload: Mapping) -> bool:
    """Store a verified Kite order update; False when it changed nothing (duplicate, late or unknown).

    `update` holds the checked fields (order_id, order_timestamp, checksum, user_id, status,
    filled_quantity, average_price, status_message); `payload` is the body as received, kept on
    the order and in the audit. Raises ApplicationError (400) when no app signs the postback.
    """
    order = _order_for_postback(update)
    if order is None:
        logger.info("Postback for Kite order %s of an account Thor does not hold", update["order_id"])
        return False
    order = Order.objects.select_for_update().get(pk=order.pk)
    if _postback_is_stale(order, update):
        return False
    broker_status = update["status"]
    before = _order_state(order)
    # Kite's intermediate statuses (UPDATE, MODIFIED, ... REQ RECEIVED) all mean the order is working.
    order.status = broker_status if broker_status in Order.Status.values else Order.Status.OPEN
    order.filled_quantity = update["filled_quantity"].quantize(QUANTITY_STEP)
    if update["average_price"]:
        order.average_price = update["average_price"].quantize(QUANTITY_STEP)
    order.status_message = update["status_message"][:500]
    order.raw = {key: value for key, value in payload.items() if key != "checksum"}
    order.save()
    OrderEvent.objects.create(
        account=order.account,
        order=order,
        kind="broker_postback",
        before=before,
        after=_order_state(order),
        broker_response=order.raw,
    )
    return True
