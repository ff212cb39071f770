"""The browser's way back from an operator's market-data login (brokers.services.market_data_login).

The Kite and Schwab callbacks hand a state marked MARKET_DATA here. Every outcome goes to one admin page of the
state's app, `…/brokerapp/<id>/market-data-login/done/`, with a signed result (the outcome's short code and
the admin path to end on): that page, behind the admin's login, turns it into a message. The callback runs
under /api/, where there are no messages, so it cannot say anything itself; signing the result keeps a link
crafted by someone else from telling the operator a login worked.

An operator's login is finished only in that operator's admin session (market_data_login's docstring says why).
The session middleware skips /api/ (thor.middleware), so the callback reads the admin session itself, with
Django's own SessionMiddleware and get_user (the admin's checks: the session's password hash, an active user),
and only for market-data states: a user's link callback never touches the session. A callback without that
session gets a page saying so (403) instead of the admin page, which the browser that brought it may not reach.
"""

import logging
from collections.abc import Mapping
from urllib.parse import urlencode

from django.contrib.auth import get_user
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse
from rest_framework.request import Request

from brokers import oauth_state
from brokers.services.linking import CallbackFailed
from brokers.services.market_data_login import NOT_THE_OPERATOR, market_data_login_complete
from identity.models import User
from thor.views import browser_page

logger = logging.getLogger("thor.brokers")

RESULT_SALT = "thor.brokers.market-data-login-result"
# The schema's entry for not_the_operator_page.
NOT_THE_OPERATOR_PAGE = OpenApiResponse(
    description="An HTML page: an operator's market-data login came back without that operator's admin session."
)
RESULT_MAX_AGE = 300


def is_market_data(state: oauth_state.OAuthState | None) -> bool:
    return state is not None and state.purpose == oauth_state.MARKET_DATA


def back_to_admin(state: oauth_state.OAuthState, outcome: str) -> HttpResponseRedirect:
    """To the admin page of the state's app, with `outcome` (`connected` or a failure's code) signed."""
    result = signing.dumps({"app_id": state.app_id, "outcome": outcome, "next": state.return_path}, salt=RESULT_SALT)
    done = reverse("admin:brokers_brokerapp_market_data_login_done", args=[state.app_id])
    response = HttpResponseRedirect(f"{done}?{urlencode({'result': result})}")
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def result_read(token: str, *, app_id: int) -> dict | None:
    """The signed result for this app, or None (forged, altered, too old, another app's)."""
    try:
        result = signing.loads(token, salt=RESULT_SALT, max_age=RESULT_MAX_AGE)
    except (signing.BadSignature, TypeError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("app_id") == app_id else None


def not_the_operator_page() -> HttpResponse:
    return browser_page(
        title="This login was not finished",
        message=(
            "A market-data login can only be finished in the browser signed in to the admin as the operator who "
            "started it. Nothing was linked, and this login link cannot be used again. Sign in to the admin as "
            "that operator in this browser, and start the login again from the app's page."
        ),
        status=403,
    )


def market_data_callback(request: Request, state: oauth_state.OAuthState, params: Mapping[str, str]) -> HttpResponse:
    """Finish the login the state is for (already consumed) if the request comes with its operator's admin
    session, and go back to the admin."""
    django_request = request._request
    # Django's own middleware, on this request only: it loads the session from the cookie, and writes back what
    # get_user changes (a session it flushes for a stale password hash, or moves to a new key).
    sessions = SessionMiddleware(lambda _: HttpResponse())
    sessions.process_request(django_request)
    return sessions.process_response(django_request, _complete(django_request, state, params))


def _signed_in(django_request: HttpRequest) -> User | None:
    user = get_user(django_request)
    return user if isinstance(user, User) and user.is_authenticated else None


def _complete(django_request: HttpRequest, state: oauth_state.OAuthState, params: Mapping[str, str]) -> HttpResponse:
    try:
        market_data_login_complete(state=state, params=params, signed_in=_signed_in(django_request))
    except CallbackFailed as failure:
        if failure.code == NOT_THE_OPERATOR:
            return not_the_operator_page()
        return back_to_admin(state, failure.code)
    except Exception:
        logger.exception("Market-data login callback failed")
        return back_to_admin(state, "server_error")
    return back_to_admin(state, "connected")
