import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest
from django.utils.cache import patch_cache_control
from django.utils.deprecation import MiddlewareMixin

from thor.logging import correlation_id_var

# A client-chosen id is echoed into logs and headers, so only a safe shape is accepted.
_SAFE_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class HybridMiddleware:
    """Sync and async capable: under ASGI a request does not hop between threads at this layer."""

    sync_capable = True
    async_capable = True
    __call__: Callable[[HttpRequest], Any]  # each subclass's own

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)


class CorrelationIdMiddleware(HybridMiddleware):
    """Accepts `X-Correlation-ID` (or makes one), echoes it and puts it in every log line."""

    @staticmethod
    def correlation_id(request) -> str:
        supplied = request.META.get("HTTP_X_CORRELATION_ID", "")
        # 32 random hex digits, as uuid4().hex was, for a fifth of its cost.
        request.correlation_id = supplied if _SAFE_CORRELATION_ID.match(supplied) else os.urandom(16).hex()
        return request.correlation_id

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        correlation_id = self.correlation_id(request)
        token = correlation_id_var.set(correlation_id)
        try:
            response = self.get_response(request)
        finally:
            correlation_id_var.reset(token)
        response["X-Correlation-ID"] = correlation_id
        return response

    async def __acall__(self, request):
        correlation_id = self.correlation_id(request)
        token = correlation_id_var.set(correlation_id)
        try:
            response = await self.get_response(request)
        finally:
            correlation_id_var.reset(token)
        response["X-Correlation-ID"] = correlation_id
        return response


# Public and cacheable: nothing in these answers belongs to a user.
_CACHEABLE_API_PATHS = re.compile(r"^/api/(health|schema|docs)/?$")


class NoStoreApiMiddleware(HybridMiddleware):
    """`Cache-Control: no-store` on every /api/ answer but health, schema and docs.

    API answers carry tokens (login, register, refresh) and account data (positions, funds, orders);
    without it a browser or a shared proxy may keep them on disk after the user has logged out.
    """

    @staticmethod
    def mark(request, response):
        if request.path.startswith("/api/") and not _CACHEABLE_API_PATHS.match(request.path):
            patch_cache_control(response, no_store=True)
        return response

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return self.mark(request, self.get_response(request))

    async def __acall__(self, request):
        return self.mark(request, await self.get_response(request))


if TYPE_CHECKING:
    _DjangoMiddleware = MiddlewareMixin  # what the mixin goes in front of
else:
    _DjangoMiddleware = object


class SkippedOnApiMixin(_DjangoMiddleware):
    """For middleware only the admin needs: a request under /api/ goes straight past it.

    The API authenticates with Bearer JWTs in DRF, keeps no session and shows no flash messages, so
    the session, Django's login and the messages do nothing for it but take time on every read.
    Subclasses of Django's own classes, so the admin's system checks still find them.
    """

    def __call__(self, request):
        if request.path_info.startswith("/api/"):
            # Under ASGI this is a coroutine, awaited by the middleware before, as the skipped one's would be.
            return self.get_response(request)
        return super().__call__(request)


class AdminSessionMiddleware(SkippedOnApiMixin, SessionMiddleware):
    pass


class AdminAuthenticationMiddleware(SkippedOnApiMixin, AuthenticationMiddleware):
    pass


class AdminMessageMiddleware(SkippedOnApiMixin, MessageMiddleware):
    pass
