"""An operator's login of a tenant's market-data session (brokers.services.market_data), on the link flows' OAuth
machinery: the same signed, single-use, expiring state (brokers.oauth_state), marked `MARKET_DATA` and naming the
shared app and its tenant, sent to the broker's login, and handed back by the same callbacks (one registered
redirect URL per app), which send it here.

Kite sessions end every morning at 06:00 IST: without this, a tenant whose users did not log in with Kite that
day has no market data. The operator is a superuser, or staff of the app's tenant allowed to change broker apps;
that is checked when the login starts and again when it finishes (an operator removed in between links
nothing). The management command starts it without an operator (`user_id` 0): whoever runs it holds the server.
A market-data state never links a user's account and a user's link state never this session: each completion
refuses the other's purpose.

What protects the operator's flow, as `broker_link_confirmation` protects a user's link (brokers.services.linking):
a state that names an operator links only when its callback comes with that operator's own admin session, from a
browser signed in to the admin as them (the admin and the callbacks share the origin, so the session cookie, which
is SameSite=Lax, comes along on the broker's redirect, a top-level GET). The callbacks run under /api/, where the
session middleware does not, so the callback reads the admin session itself (brokers.api.market_data_views).
Without this, whoever's browser presents the callback (a login URL forwarded, leaked or opened elsewhere, the
broker login in it perhaps somebody else's) would link that session for the whole tenant. Any other callback is
refused before the broker's token is exchanged, with a page saying so and one log line naming the app, the
operator and whoever's session came (ids only: never a token, code, state or session key).

Its state is spent all the same, as every callback's is, whatever the outcome: the first presentation of a state
ends it, so a refused one cannot be tried again, and the broker login that came with it, made in a browser that
is not the operator's, can never be linked later, not even by the operator's own browser; the operator starts a
new login. Not covered: an operator's own signed-in browser made to open a callback URL that carries the
operator's leaked state with someone else's broker login (the state binds the operator, not one browser tab).
The command-line flow (`user_id` 0) has no operator to bind to and finishes in any browser, as before: its URL is
printed to the shell of someone who holds the server.
"""

import logging
from collections.abc import Mapping

from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from rest_framework import status

from brokers import oauth_state
from brokers.adapters.errors import BrokerError
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.registry import adapter_for_app
from brokers.services.linking import CallbackFailed
from brokers.services.market_data import market_data_connect, schwab_market_data_connect
from brokers.services.schwab_linking import MAX_CODE_LENGTH
from identity.models import User
from thor.errors import ApplicationError

logger = logging.getLogger("thor.brokers")

# The operator of a login the management command started: nobody to check, the shell is the authority.
COMMAND_LINE = 0
# The callback of an operator's login came without that operator's admin session.
NOT_THE_OPERATOR = "not_the_operator"


def operator_may_log_in(user: User, app: BrokerApp) -> bool:
    """A superuser, or active staff of the app's tenant with the right to change broker apps."""
    if not (user.is_active and user.is_staff):
        return False
    if user.is_superuser:
        return True
    return user.tenant_id == app.tenant_id and user.has_perm("brokers.change_brokerapp")


def admin_path_allowed(path: str) -> bool:
    """Where an operator may be sent back to: a path of this site's admin, never another host or scheme."""
    return (
        isinstance(path, str)
        and len(path) <= 500
        and url_has_allowed_host_and_scheme(path, allowed_hosts=set(), require_https=False)
        and path.startswith(reverse("admin:index"))
        and not path.startswith("//")
        and "\\" not in path
    )


def _shared_app_or_fail(app: BrokerApp) -> None:
    if app.owner_id is not None or app.kind not in (BrokerKind.KITE, BrokerKind.SCHWAB):
        raise ApplicationError(
            "Market data comes through a tenant's shared Kite or Schwab app.",
            code="not_shared_app",
            status_code=status.HTTP_400_BAD_REQUEST,
        )


def market_data_login_start(*, app: BrokerApp, operator: User | None, return_path: str = "") -> str:
    """The broker's login URL for the app's market-data session, with a market-data state; `operator` None is
    the management command. Raises ApplicationError (not a shared app, operator not allowed, bad return path)."""
    _shared_app_or_fail(app)
    if operator is not None and not operator_may_log_in(operator, app):
        raise ApplicationError(
            "Only a superuser or staff of the app's tenant may log in its market-data session.",
            code="permission_denied",
            status_code=status.HTTP_403_FORBIDDEN,
        )
    if return_path and not admin_path_allowed(return_path):
        raise ApplicationError("The page to return to is not an admin page.", code="redirect_not_allowed")
    state = oauth_state.issue(
        user_id=operator.pk if operator is not None else COMMAND_LINE,
        tenant_slug=app.tenant.slug,
        app_id=app.pk,
        connection_id=0,
        frontend_origin="",
        purpose=oauth_state.MARKET_DATA,
        return_path=return_path,
    )
    return adapter_for_app(app).authorization_url(state)


def market_data_login_complete(
    *, state: oauth_state.OAuthState, params: Mapping[str, str], signed_in: User | None
) -> BrokerConnection:
    """Exchange the callback's request token (Kite) or code (Schwab) at the state's app and link the session as
    its tenant's market-data connection. `signed_in` is the user whose admin session the callback came with (None:
    none): a state that names an operator links only for that operator. Raises CallbackFailed with a short code;
    the network calls run outside any transaction (market_data_connect's)."""
    if state.purpose != oauth_state.MARKET_DATA:
        raise CallbackFailed("state_invalid")
    app = (
        BrokerApp.objects.select_related("tenant")
        .filter(pk=state.app_id, tenant__slug=state.tenant_slug, owner__isnull=True)
        .first()
    )
    if app is None:
        raise CallbackFailed("state_invalid")
    if state.user_id != COMMAND_LINE:
        if signed_in is None or signed_in.pk != state.user_id:
            presented = f"user {signed_in.pk}'s admin session" if signed_in is not None else "no admin session"
            logger.warning(
                "Market-data login of app %s refused: operator %s started it, the callback came with %s",
                app.pk,
                state.user_id,
                presented,
            )
            raise CallbackFailed(NOT_THE_OPERATOR)
        if not operator_may_log_in(signed_in, app):
            raise CallbackFailed("not_allowed")
    try:
        if app.kind == BrokerKind.KITE:
            if params.get("status") != "success" or not params.get("request_token"):
                raise CallbackFailed("denied")
            return market_data_connect(app=app, request_token=params["request_token"])
        if params.get("error"):
            raise CallbackFailed("denied")
        code = params.get("code") or ""
        if not code:
            raise CallbackFailed("missing_code")
        if len(code) > MAX_CODE_LENGTH:
            raise CallbackFailed("invalid_code")
        return schwab_market_data_connect(app=app, code=code)
    except BrokerError as error:
        # The code only: a broker's message may echo the request.
        logger.warning("Market-data login failed at the broker for app %s: %s", app.pk, error.code)
        raise CallbackFailed("exchange_failed") from None
