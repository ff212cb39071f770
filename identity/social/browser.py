"""The browser's side of every social login: the binding cookie, the callback's checks, the final redirect.

Shared by the Google and Discord views (identity) and the Zerodha ones (brokers).
"""

import logging

from django.conf import settings
from django.http import HttpResponseRedirect

from identity.social import delivery, services
from identity.social import state as login_state
from thor.views import LoginLinkInvalid

logger = logging.getLogger("thor.identity")


def set_login_cookie(response, issued: login_state.IssuedState, request) -> None:
    """The browser binding: only this browser's callback can finish the login it started."""
    response.set_cookie(
        issued.cookie_name,
        issued.cookie_value,
        max_age=settings.THOR_SOCIAL_LOGIN_MAX_AGE,
        path="/api/",
        httponly=True,
        samesite="Lax",
        secure=settings.PRODUCTION or request.is_secure(),
    )


def forget_login_cookie(response, state: login_state.LoginState) -> None:
    response.delete_cookie(login_state.cookie_name(state.state_id), path="/api/", samesite="Lax")


def start_redirect(authorization_url: str, issued: login_state.IssuedState, request):
    response = HttpResponseRedirect(authorization_url)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    set_login_cookie(response, issued, request)
    return response


def _state_refused(invalid: login_state.LoginStateInvalid):
    """A state Thor signed that is too old or used sends the SPA `error=state_expired|state_used` (no
    token, so no browser binding is needed); one that is not Thor's gets a page (LoginLinkInvalid)."""
    state = invalid.state
    if state is None:
        raise LoginLinkInvalid from None
    response = delivery.error_redirect(
        redirect_uri=state.redirect_uri, error=invalid.code, agent=state.tenant_slug, provider=state.provider
    )
    forget_login_cookie(response, state)
    return response


def callback(request, *, agent_id: str, provider: str, complete):
    """A social login's callback around `complete(state)` -> (user, email): every outcome of a state
    Thor signed redirects to the SPA page it names."""
    try:
        state = services.login_callback_state(
            token=request.query_params.get("state", ""), tenant_slug=agent_id, provider=provider
        )
    except login_state.LoginStateInvalid as invalid:
        return _state_refused(invalid)
    return finish(request, state, lambda: complete(state))


def finish(request, state: login_state.LoginState, complete):
    """The browser check, the single use and the final redirect around `complete()` -> (user, email).

    A state without its browser's cookie is refused with no token (login CSRF); any failure after
    that sends the SPA `error=<code>`.
    """

    def refuse(code: str):
        response = delivery.error_redirect(
            redirect_uri=state.redirect_uri, error=code, agent=state.tenant_slug, provider=state.provider
        )
        forget_login_cookie(response, state)
        return response

    if not login_state.browser_matches(state, request.COOKIES):
        return refuse("browser_mismatch")
    try:
        user, email = complete()
    except login_state.LoginStateInvalid as invalid:
        return _state_refused(invalid)
    except services.LoginFailed as failure:
        return refuse(failure.code)
    except Exception:
        logger.exception("%s login failed", state.provider)
        return refuse("server_error")
    response = delivery.login_redirect(user=user, provider=state.provider, email=email, redirect_uri=state.redirect_uri)
    forget_login_cookie(response, state)
    return response
