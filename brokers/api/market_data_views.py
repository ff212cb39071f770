"""The browser's way back from an operator's market-data login (brokers.services.market_data_login).

The Kite and Schwab callbacks hand a state marked MARKET_DATA here. Every outcome goes to one admin page of the
state's app, `…/brokerapp/<id>/market-data-login/done/`, with a signed result (the outcome's short code and
the admin path to end on): that page, behind the admin's login, turns it into a message. The callback runs
under /api/, where there are no sessions or messages, so it cannot say anything itself; signing the result
keeps a link crafted by someone else from telling the operator a login worked.
"""

import logging
from collections.abc import Mapping
from urllib.parse import urlencode

from django.core import signing
from django.http import HttpResponseRedirect
from django.urls import reverse

from brokers import oauth_state
from brokers.services.linking import CallbackFailed
from brokers.services.market_data_login import market_data_login_complete

logger = logging.getLogger("thor.brokers")

RESULT_SALT = "thor.brokers.market-data-login-result"
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


def market_data_callback(state: oauth_state.OAuthState, params: Mapping[str, str]) -> HttpResponseRedirect:
    """Finish the login the state is for (already consumed), and go back to the admin."""
    try:
        market_data_login_complete(state=state, params=params)
    except CallbackFailed as failure:
        return back_to_admin(state, failure.code)
    except Exception:
        logger.exception("Market-data login callback failed")
        return back_to_admin(state, "server_error")
    return back_to_admin(state, "connected")
