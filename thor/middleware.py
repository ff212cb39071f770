import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

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
