import re
import uuid

from thor.logging import correlation_id_var

# A client-chosen id is echoed into logs and headers, so only a safe shape is accepted.
_SAFE_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class CorrelationIdMiddleware:
    """Accepts `X-Correlation-ID` (or makes one), echoes it and puts it in every log line."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Correlation-ID", "")
        correlation_id = supplied if _SAFE_CORRELATION_ID.match(supplied) else uuid.uuid4().hex
        request.correlation_id = correlation_id
        token = correlation_id_var.set(correlation_id)
        try:
            response = self.get_response(request)
        finally:
            correlation_id_var.reset(token)
        response["X-Correlation-ID"] = correlation_id
        return response
