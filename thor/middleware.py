import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as sessions_middleware
from django.middleware import clickjacking, common, csrf, security
from django_prometheus import middleware as prometheus_middleware

from thor.logging import correlation_id_var

# A client-chosen id is echoed into logs and headers, so only a safe shape is accepted.
_SAFE_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class CorrelationIdMiddleware:
    """Accepts `X-Correlation-ID` (or makes one), echoes it and puts it in every log line.

    Async-capable, so under ASGI a request does not hop between threads at this layer.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    @staticmethod
    def _correlation_id(request) -> str:
        supplied = request.headers.get("X-Correlation-ID", "")
        request.correlation_id = supplied if _SAFE_CORRELATION_ID.match(supplied) else uuid.uuid4().hex
        return request.correlation_id

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        correlation_id = self._correlation_id(request)
        token = correlation_id_var.set(correlation_id)
        try:
            response = self.get_response(request)
        finally:
            correlation_id_var.reset(token)
        response["X-Correlation-ID"] = correlation_id
        return response

    async def __acall__(self, request):
        correlation_id = self._correlation_id(request)
        token = correlation_id_var.set(correlation_id)
        try:
            response = await self.get_response(request)
        finally:
            correlation_id_var.reset(token)
        response["X-Correlation-ID"] = correlation_id
        return response


# --- Django's and django-prometheus's middleware without a thread hop per hook -------------------
#
# Under ASGI, MiddlewareMixin runs every process_request/process_response through
# sync_to_async: two round trips to a worker thread per middleware, ~20 per request with the
# stack in settings.MIDDLEWARE, each costing more than the hook itself. The subclasses below run
# the hooks on the event loop when they are known to be pure computation on the request and the
# response (headers, cookies, counters), and still go to a thread in the cases that may reach
# the database (a session to save, messages to store, a CSRF check to run). Under WSGI and the
# sync test client they are the classes they extend, unchanged.


class _InlineHooks:
    """Mix in before a MiddlewareMixin subclass: its hooks run inline on the event loop unless
    `request_needs_thread` / `response_needs_thread` / `view_needs_thread` say otherwise."""

    def __init__(self, get_response):
        super().__init__(get_response)
        if self.async_mode and hasattr(self, "process_view"):
            # BaseHandler adapts process_view once, at start-up: a coroutine function is awaited as is.
            sync_process_view = self.process_view

            async def process_view(request, callback, callback_args, callback_kwargs):
                if self.view_needs_thread(request, callback):
                    return await sync_to_async(sync_process_view, thread_sensitive=True)(
                        request, callback, callback_args, callback_kwargs
                    )
                return sync_process_view(request, callback, callback_args, callback_kwargs)

            self.process_view = process_view

    def request_needs_thread(self, request) -> bool:
        return False

    def response_needs_thread(self, request, response) -> bool:
        return False

    def view_needs_thread(self, request, callback) -> bool:
        return False

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            if self.request_needs_thread(request):
                response = await sync_to_async(self.process_request, thread_sensitive=True)(request)
            else:
                response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request, response):
                response = await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            else:
                response = self.process_response(request, response)
        return response


class PrometheusBeforeMiddleware(_InlineHooks, prometheus_middleware.PrometheusBeforeMiddleware):
    """Counters and a timer."""


class PrometheusAfterMiddleware(_InlineHooks, prometheus_middleware.PrometheusAfterMiddleware):
    """Counters and a timer (process_exception and process_template_response still go to a thread)."""


class SecurityMiddleware(_InlineHooks, security.SecurityMiddleware):
    """An HTTPS redirect and response headers."""


class CommonMiddleware(_InlineHooks, common.CommonMiddleware):
    """User-agent and slash checks against the URLconf, Content-Length."""


class XFrameOptionsMiddleware(_InlineHooks, clickjacking.XFrameOptionsMiddleware):
    """One response header."""


class AuthenticationMiddleware(_InlineHooks, auth_middleware.AuthenticationMiddleware):
    """Sets a lazy request.user: the session and user lookups happen on first use, in the view's thread."""


class CsrfViewMiddleware(_InlineHooks, csrf.CsrfViewMiddleware):
    """Cookie reads and writes inline; the token check of an unsafe request on a protected view in a thread."""

    def view_needs_thread(self, request, callback) -> bool:
        exempt = getattr(request, "csrf_processing_done", False) or getattr(callback, "csrf_exempt", False)
        return not exempt and request.method not in ("GET", "HEAD", "OPTIONS", "TRACE")


class SessionMiddleware(_InlineHooks, sessions_middleware.SessionMiddleware):
    """A lazy session store inline; a session to save (a database write) in a thread."""

    def response_needs_thread(self, request, response) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class MessageMiddleware(_InlineHooks, messages_middleware.MessageMiddleware):
    """A lazy message store inline; messages to store (in the session or a cookie) in a thread."""

    def response_needs_thread(self, request, response) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)
