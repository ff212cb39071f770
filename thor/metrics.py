"""Prometheus request metrics: django-prometheus's series (the same names, labels and buckets, so its
dashboards and alerts keep working), recorded by one middleware that keeps the labelled series it made.

django-prometheus's own pair of middlewares cost a cached read about as much as Thor's authentication
(about 70 us of 470 in-process, bench/README.md): two MiddlewareMixin layers, and a dozen `labels()` calls
per request, each taking a lock and building its key. Here one layer, first in MIDDLEWARE, looks up each
labelled series once per process. django-prometheus still registers the series and serves /metrics.

One difference, on purpose: both latency series (`..._including_middlewares_seconds` and
`..._seconds_by_view_method`) time the whole stack from this middleware, the first, instead of the
second starting after the other middlewares' request phase. Nothing but the view runs between them.
"""

import hmac
import ipaddress
from timeit import default_timer

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import JsonResponse
from django_prometheus.exports import ExportToDjangoView
from django_prometheus.middleware import Metrics

from thor.errors import error_body
from thor.middleware import HybridMiddleware

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"})
_UNNAMED_VIEW = "<unnamed view>"


class _Series:
    """A labelled metric's children by their label values, made on first use and then looked up."""

    def __init__(self, metric, *label_names: str):
        self.metric = metric
        self.label_names = label_names
        self.children: dict[tuple, object] = {}

    def __call__(self, *values: str):
        child = self.children.get(values)
        if child is None:
            # Two threads making the same child get the same one: prometheus_client keeps it by its labels.
            child = self.children[values] = self.metric.labels(**dict(zip(self.label_names, values, strict=True)))
        return child


class RequestMetricsMiddleware(HybridMiddleware):
    """Counts every request and response, by method, transport, view, status and charset, their body sizes,
    latency by view and method, and exceptions by type and view."""

    def __init__(self, get_response):
        super().__init__(get_response)
        metrics = Metrics.get_instance()
        self.metrics = metrics
        self.requests_by_method = _Series(metrics.requests_by_method, "method")
        self.requests_by_transport = _Series(metrics.requests_by_transport, "transport")
        self.requests_by_view = _Series(metrics.requests_by_view_transport_method, "view", "transport", "method")
        self.responses_by_status = _Series(metrics.responses_by_status, "status")
        self.responses_by_status_view = _Series(metrics.responses_by_status_view_method, "status", "view", "method")
        self.responses_by_charset = _Series(metrics.responses_by_charset, "charset")
        self.latency_by_view = _Series(metrics.requests_latency_by_view_method, "view", "method")
        self.responses_by_template = _Series(metrics.responses_by_templatename, "templatename")
        self.exceptions_by_type = _Series(metrics.exceptions_by_type, "type")
        self.exceptions_by_view = _Series(metrics.exceptions_by_view, "view")

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        started = default_timer()
        self.request_counted(request)
        response = self.get_response(request)
        self.response_counted(request, response, started)
        return response

    async def __acall__(self, request):
        started = default_timer()
        self.request_counted(request)
        response = await self.get_response(request)
        self.response_counted(request, response, started)
        return response

    def request_counted(self, request) -> None:
        metrics = self.metrics
        metrics.requests_total.inc()
        request.metrics_method = request.method if request.method in _METHODS else "<invalid method>"
        request.metrics_transport = "https" if request.is_secure() else "http"
        self.requests_by_method(request.metrics_method).inc()
        self.requests_by_transport(request.metrics_transport).inc()
        meta = request.META
        if meta.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
            metrics.requests_ajax.inc()
        metrics.requests_body_bytes.observe(_content_length(meta))

    def response_counted(self, request, response, started: float) -> None:
        elapsed = default_timer() - started
        metrics = self.metrics
        method = request.metrics_method
        view = _view_name(request)
        status = str(response.status_code)
        if view is not None:
            self.requests_by_view(view, request.metrics_transport, method).inc()
        view = view or _UNNAMED_VIEW
        metrics.responses_total.inc()
        self.responses_by_status(status).inc()
        self.responses_by_status_view(status, view, method).inc()
        self.responses_by_charset(str(response.charset)).inc()
        if response.streaming:
            metrics.responses_streaming.inc()
        else:
            metrics.responses_body_bytes.observe(len(response.content))
        metrics.requests_latency_before.observe(elapsed)
        self.latency_by_view(view, method).observe(elapsed)

    def process_template_response(self, request, response):
        self.responses_by_template(str(response.template_name)).inc()
        return response

    def process_exception(self, request, exception):
        self.exceptions_by_type(type(exception).__name__).inc()
        self.exceptions_by_view(_view_name(request) or _UNNAMED_VIEW).inc()


def _content_length(meta) -> int:
    # A client's header: anything but a count is no body (as Django reads it), never a 500 here.
    try:
        return max(0, int(meta.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def _view_name(request) -> str | None:
    """The resolved view's name; None when no view was resolved (an unknown path outside /api/)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    return match.view_name or _UNNAMED_VIEW


def metrics_view(request):
    """django-prometheus's /metrics for a scraper only: the bearer THOR_METRICS_TOKEN, or, without one, a client
    on this machine. The series name every view, status and exception type, nothing the public should map."""
    if not _may_scrape(request):
        return JsonResponse(
            error_body("Authentication credentials were not provided.", 401, "not_authenticated"),
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return ExportToDjangoView(request)


def _may_scrape(request) -> bool:
    token = settings.THOR_METRICS_TOKEN
    if token:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False
