"""/metrics: django-prometheus's series (its own two middlewares record them, first and last in MIDDLEWARE)
and Thor's own (brokers.metrics), for a scraper only."""

import hmac
import ipaddress

from django.conf import settings
from django.http import JsonResponse
from django_prometheus.exports import ExportToDjangoView

from thor.errors import error_body


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
