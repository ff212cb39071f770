"""WSGI: the reads the caches answer whole, answered before Django's request handler.

An SPA polls positions, funds and the first page of orders every few seconds for every open tab, and
nearly every one of those reads is answered from the caches (accounts.api.cached_reads). Once DRF's
cycle was off that path, what was left around it was Django's handler itself: the request signals,
twelve middleware layers each wrapped in its exception converter, and the URL resolver behind them,
together about as much as the answer (bench/README.md). This layer sits between the WSGI server and
Django's handler and, for a request that can only be such a read, does what that stack would do, in
the same order, with the same middleware's own code where it exposes it:

- request phase: Django's host validation (ALLOWED_HOSTS), SecurityMiddleware's HTTPS redirect and
  CsrfViewMiddleware's cookie reading; anything one of them would answer itself (a redirect, a 400)
  goes to Django, which answers it;
- the view: the URL resolved by Django's resolver (each path once per process, LRU-bound), then the
  view's `cached_response(request, ...)` (accounts.api.cached_reads), under the request's correlation
  id; None goes to Django;
- response phase, innermost first: X-Frame-Options, the CSRF cookie (if the request phase rotated
  it), Content-Length, CORS (corsheaders' own code), the security headers, `no-store`, the correlation
  id, and the request metrics (thor.metrics), timed from the start of this layer.

It opens only while MIDDLEWARE is exactly `REPLAYED_MIDDLEWARE` (and CommonMiddleware's PREPEND_WWW and
DISALLOWED_USER_AGENTS are off): a middleware added, removed or moved closes it (with a warning at
start and from `manage.py check`, thor.W001) until this layer is taught what the change does.
THOR_EARLY_READS=false closes it on purpose: every read then takes Django's whole stack, as under
uvicorn. Tests hold the answers of both paths together, byte for byte and header for header
(thor/tests/test_early_reads.py).

What it leaves out on purpose: the request_started/request_finished signals (they close database
connections and caches that a cached read never opens, bar the one case handled at the end of
`answer`; the answer is a list, so the server's close() sends no signal either), and the whitenoise,
session, authentication and messages layers (no /api/ path is a static file, and the three admin
layers already pass /api/ by: thor.middleware.SkippedOnApiMixin).
Only GETs under /api/ with a Bearer token and no query string are looked at; everything else is
handed to Django untouched.
"""

import functools
import logging
from timeit import default_timer

from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest, get_path_info
from django.core.signals import request_finished
from django.db import connections
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, get_resolver

from thor.logging import correlation_id_var
from thor.metrics import RequestMetricsMiddleware
from thor.middleware import CorrelationIdMiddleware, NoStoreApiMiddleware

logger = logging.getLogger(__name__)

# The MIDDLEWARE this layer replays (thor/settings.py), in order, with what each does to a cached read. A
# deliberate copy: a change to the settings' list closes the layer instead of changing what it answers.
REPLAYED = (
    ("thor.metrics.RequestMetricsMiddleware", "counts the request and its answer, timed from the start"),
    ("thor.middleware.CorrelationIdMiddleware", "the correlation id: in the logs, echoed"),
    ("thor.middleware.NoStoreApiMiddleware", "Cache-Control: no-store"),
    ("django.middleware.security.SecurityMiddleware", "HTTPS redirect; HSTS, nosniff, referrer and opener policy"),
    ("whitenoise.middleware.WhiteNoiseMiddleware", "nothing: no /api/ path is a static file"),
    ("corsheaders.middleware.CorsMiddleware", "Vary: origin; the allow headers for an allowed Origin"),
    ("thor.middleware.AdminSessionMiddleware", "nothing under /api/"),
    ("django.middleware.common.CommonMiddleware", "host validation; Content-Length"),
    ("django.middleware.csrf.CsrfViewMiddleware", "reads the cookie; rotates a malformed one"),
    ("thor.middleware.AdminAuthenticationMiddleware", "nothing under /api/"),
    ("thor.middleware.AdminMessageMiddleware", "nothing under /api/"),
    ("django.middleware.clickjacking.XFrameOptionsMiddleware", "X-Frame-Options"),
)
REPLAYED_MIDDLEWARE = tuple(path for path, _ in REPLAYED)
API_PREFIX = "/api/"
RESOLVED_PATHS = 4096
# No read's path is longer; a longer one is resolved every time rather than kept.
RESOLVED_PATH_LENGTH = 200


def _never_called(request):
    raise AssertionError("a replayed middleware's own chain is never called")


def closed_because() -> str | None:
    """Why this layer hands every request to Django under these settings (see the module); None when it opens."""
    if not settings.THOR_EARLY_READS:
        return "THOR_EARLY_READS is off"
    if tuple(settings.MIDDLEWARE) != REPLAYED_MIDDLEWARE:
        return "MIDDLEWARE is not the list thor.early_reads replays"
    if settings.STATIC_URL.startswith(API_PREFIX):
        return "STATIC_URL is under /api/"
    # CommonMiddleware's request phase does nothing but validate the host (done here) unless one of these is set.
    if settings.PREPEND_WWW or settings.DISALLOWED_USER_AGENTS:
        return "PREPEND_WWW or DISALLOWED_USER_AGENTS is set"
    return None


def _may_be_a_cached_read(environ) -> bool:
    return (
        environ.get("REQUEST_METHOD") == "GET"
        and not environ.get("QUERY_STRING")
        and "HTTP_AUTHORIZATION" in environ
        and environ.get("PATH_INFO", "").startswith(API_PREFIX)
    )


class EarlyReads:
    """WSGI: answers the cached reads before Django's handler, hands every other request to it."""

    def __init__(self, application):
        self.application = application
        reason = closed_because()
        self.open = reason is None
        if not self.open:
            logger.log(
                logging.INFO if reason.startswith("THOR_EARLY_READS") else logging.WARNING,
                "early_reads_closed: %s",
                reason,
            )
            return
        # The URLconf never changes in a running process, so a path resolves the same way every time; the
        # bounds keep hostile paths (every account id there is, long made-up ones) from growing it without end.
        self.resolved = functools.lru_cache(maxsize=RESOLVED_PATHS)(_resolved)
        self.metrics = RequestMetricsMiddleware(_never_called)
        self.security = SecurityMiddleware(_never_called)
        self.cors = CorsMiddleware(_never_called)
        self.common = CommonMiddleware(_never_called)
        self.csrf = CsrfViewMiddleware(_never_called)
        self.x_frame = XFrameOptionsMiddleware(_never_called)

    def __call__(self, environ, start_response):
        if self.open and _may_be_a_cached_read(environ):
            try:
                response = self.answer(environ)
            except Exception as error:  # Django's handler meets it again, and answers and logs it its way
                logger.warning("early_read_handed_on: %s", type(error).__name__)
                response = None
            if response is not None:
                status = f"{response.status_code} {response.reason_phrase}"
                cookies = [("Set-Cookie", cookie.output(header="")) for cookie in response.cookies.values()]
                start_response(status, [*response.items(), *cookies])
                return [response.content]
        return self.application(environ, start_response)

    def answer(self, environ):
        """The response Django's stack would give this request, when the view answers it from the caches;
        None for anything else."""
        started = default_timer()
        # The path first: any other GET with a token (most of the API) is handed on after one look-up.
        path_info = get_path_info(environ)
        match = self.resolved(path_info) if len(path_info) <= RESOLVED_PATH_LENGTH else _resolved(path_info)
        cached_response = getattr(match, "func", None) and getattr(match.func, "cached_response", None)
        if cached_response is None:
            return None
        # A copy: WSGIRequest writes the decoded path back into its environ (PATH_INFO as text, not the server's
        # latin-1), and Django's handler, which gets this environ when the read is handed on, cannot encode it.
        request = WSGIRequest(dict(environ))
        if not self._request_phase_passes(request):
            return None
        request.resolver_match = match
        correlation_id = CorrelationIdMiddleware.correlation_id(request)
        context = correlation_id_var.set(correlation_id)
        try:
            response = cached_response(request, *match.args, **match.kwargs)
        finally:
            correlation_id_var.reset(context)
        if response is None:
            return None
        self.x_frame.process_response(request, response)
        self.csrf.process_response(request, response)
        self.common.process_response(request, response)
        self.cors.add_response_headers(request, response)
        self.security.process_response(request, response)
        NoStoreApiMiddleware.mark(request, response)
        response["X-Correlation-ID"] = correlation_id
        self.metrics.request_counted(request)
        self.metrics.response_counted(request, response, started)
        _connections_closed_as_django_would(type(self))
        return response

    def _request_phase_passes(self, request) -> bool:
        try:
            request.get_host()
        except DisallowedHost:
            return False
        if self.security.process_request(request) is not None:
            return False
        self.csrf.process_request(request)
        return True


def _connections_closed_as_django_would(sender) -> None:
    """A cached read opens no database connection, but CORS may load the tenants' origins (identity.signals,
    once a minute): the end of a request gives such a connection back, as at the end of Django's."""
    if any(connection.connection is not None for connection in connections.all(initialized_only=True)):
        request_finished.send(sender=sender)


def _resolved(path_info: str):
    try:
        return get_resolver().resolve(path_info)
    except Resolver404:
        return None
