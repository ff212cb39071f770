"""Base views shared by the apps, and what a person's browser is shown when an OAuth link is no good."""

from django.http import HttpResponse
from django.utils.html import format_html
from drf_spectacular.utils import OpenApiResponse
from rest_framework.views import APIView

# An OAuth login often runs in a popup: seed 000's SPA opens the broker's login with window.open and its
# /broker-callback page answers with window.opener.postMessage. A response carrying
# `Cross-Origin-Opener-Policy: same-origin` (Django's default, SECURE_CROSS_ORIGIN_OPENER_POLICY) anywhere
# in the popup's chain, a redirect included, moves the popup to a new browsing context group and sets
# window.opener to null for good. So the hops Thor serves inside such a popup (BrowserRedirectView)
# answer `unsafe-none`, which SecurityMiddleware leaves alone; every other answer keeps `same-origin`.
POPUP_OPENER_POLICY = "unsafe-none"

_ERROR_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
    "<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}}</style></head>"
    "<body><h1>{title}</h1><p>{message}</p></body></html>"
)


class LoginLinkInvalid(Exception):
    """An OAuth callback reached with a state Thor did not sign, or that no longer names a place to go
    back to: there is no trusted frontend to redirect to, so the person gets a page (never JSON)."""


# The schema's entry for that page.
LOGIN_LINK_PAGE = OpenApiResponse(description="An HTML page: the login link is not Thor's, or leads nowhere allowed.")


def browser_page(*, title: str, message: str, status: int) -> HttpResponse:
    """A page a person can read in the popup or tab an OAuth hop ran in; put nothing from the request in it."""
    body = format_html(_ERROR_PAGE, title=title, message=message)
    response = HttpResponse(body, status=status, content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


def login_link_invalid_page() -> HttpResponse:
    return browser_page(
        title="This login link cannot be used",
        message=(
            "The link is not valid for this site, or it no longer leads back to an app. "
            "Close this window and start the login again from the app."
        ),
        status=400,
    )


class BrowserRedirectView(APIView):
    """A view a browser is sent to in an OAuth flow (a login start or callback), often inside a popup.

    Browsers ask for `text/html`, which no API renderer offers, so DRF's content negotiation would
    answer 406 before the view runs. A redirect has no body to negotiate; the error answers such a
    view may still give are rendered with the first renderer, JSON, in the one error format, except
    LoginLinkInvalid, which is a page. Every answer keeps the popup's opener (POPUP_OPENER_POLICY).
    """

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)

    def handle_exception(self, exc):
        if isinstance(exc, LoginLinkInvalid):
            return login_link_invalid_page()
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cross-Origin-Opener-Policy"] = POPUP_OPENER_POLICY
        return response
