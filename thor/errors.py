"""One application error type and one handler: every error answers the same JSON.

`{"detail": "...", "status_code": N, "code": "..."}` plus `"errors": {field: [...]}` on
validation errors (seed 001's format, with a machine-readable code). A field of a nested object or list
is named by its dotted path (`orders.1.quantity`), so `errors` is always flat.
"""

import logging
import math

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from thor.upstream import UpstreamError, UpstreamErrorCode

logger = logging.getLogger("thor.errors")


# How each upstream (broker) failure reads to the API's client (DESIGN.md section 3).
BROKER_ERROR_RESPONSES = {
    UpstreamErrorCode.TOKEN_EXPIRED: (
        409,
        "reauth_required",
        "The broker session has expired: link the account again.",
    ),
    UpstreamErrorCode.RATE_LIMITED: (
        503,
        "broker_rate_limited",
        "The broker's rate limit is reached; try again shortly.",
    ),
    UpstreamErrorCode.ORDER_RATE_LIMITED: (
        429,
        "order_rate_limited",
        "The broker account's order rate is spent: this one was not sent; try again after Retry-After seconds.",
    ),
    UpstreamErrorCode.EGRESS_UNREACHABLE: (
        503,
        "egress_unreachable",
        "Your order egress (the proxy on your registered static IP) could not be reached: nothing was sent.",
    ),
    UpstreamErrorCode.UNAVAILABLE: (503, "broker_unavailable", "The broker is not answering; try again shortly."),
    UpstreamErrorCode.TIMEOUT: (503, "broker_unavailable", "The broker did not answer in time; try again shortly."),
    UpstreamErrorCode.UNCONFIRMED: (
        503,
        "broker_unconfirmed",
        "The broker took the request without naming the order it made; Thor is finding it in the order book.",
    ),
    UpstreamErrorCode.REJECTED: (422, "broker_rejected", "The broker rejected the request."),
    UpstreamErrorCode.INVALID_INPUT: (400, "broker_invalid_input", "The broker refused the input."),
    UpstreamErrorCode.PERMISSION_DENIED: (403, "broker_permission_denied", "The broker does not allow this."),
    UpstreamErrorCode.NOT_FOUND: (404, "not_found", "Not found at the broker."),
}


class ApplicationError(Exception):
    """A failure the caller can act on: it carries the HTTP status and a stable code."""

    def __init__(
        self, message, *, code="invalid", status_code=status.HTTP_400_BAD_REQUEST, errors=None, retry_after=None
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.errors = errors
        self.retry_after = retry_after


class ErrorSerializer(serializers.Serializer):
    """The one error shape, as the OpenAPI schema shows it."""

    detail = serializers.CharField()
    status_code = serializers.IntegerField()
    code = serializers.CharField()
    # DRF's metaclass takes declared fields out of the class: this shadows no Serializer.errors.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors: messages by dotted field path (`orders.1.quantity`).",
    )


def error_responses(*status_codes):
    """`extend_schema(responses=...)` entries documenting the error shape for each status."""
    return {status_code: ErrorSerializer for status_code in status_codes}


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up: a client told to come back sooner than the limit frees up is refused again."""
    return str(max(1, math.ceil(seconds)))


def error_body(detail, status_code, code, errors=None):
    body = {"detail": str(detail), "status_code": status_code, "code": code}
    if errors:
        body["errors"] = errors
    return body


def broker_error_body(error: UpstreamError) -> dict:
    """The answer to a broker failure (`status_code` in it); stored as is when a request must answer it again."""
    status_code, code, detail = BROKER_ERROR_RESPONSES[error.code]
    if error.code in (UpstreamErrorCode.REJECTED, UpstreamErrorCode.INVALID_INPUT) and error.broker_message:
        # The broker's own words on why an order was refused are for the user; nothing else is.
        detail = f"{detail} {error.broker_message[:200]}"
    elif error.code == UpstreamErrorCode.ORDER_RATE_LIMITED and error.message:
        # Thor's own words (brokers.adapters.kite_limits: which limit, a second's or a minute's), never the broker's.
        detail = f"{detail} {error.message}"
    return error_body(detail, status_code, code)


NON_FIELD = "non_field_errors"


def field_errors(detail, path: str = "") -> dict[str, list[str]]:
    """A validation error tree as `{dotted field path: [messages]}`, the one shape `errors` has.

    DRF nests the errors of nested serializers and list items (`{"orders": {1: {"quantity": [...]}}}`);
    a client should not have to walk a tree whose shape depends on the field, so each message is filed
    under the path of what it is about: `orders.1.quantity`; `orders.1` for the leg as a whole (one that
    is not an object, say); `non_field_errors` only for the request as a whole.
    """
    if isinstance(detail, dict):
        children = [(_path_join(path, key).removesuffix(f".{NON_FIELD}"), value) for key, value in detail.items()]
    elif isinstance(detail, list):
        # A list of messages stays under its field; a list of nested errors (many=True) goes by index.
        children = [(path if _is_message(item) else _path_join(path, index), item) for index, item in enumerate(detail)]
    else:
        return {path or NON_FIELD: [str(detail)]}
    flat: dict[str, list[str]] = {}
    for child_path, child in children:
        for field, messages in field_errors(child, child_path).items():
            flat.setdefault(field, []).extend(messages)
    return flat


def _path_join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_message(item) -> bool:
    return not isinstance(item, (dict, list))


def _first_message(errors: dict[str, list[str]]) -> str:
    """A one-line summary of the field errors, for `detail`."""
    field, messages = next(iter(errors.items()))
    return messages[0] if field == NON_FIELD else f"{field}: {messages[0]}"


def exception_handler(exc, context):
    headers = {}
    if isinstance(exc, RequestDataTooBig):
        # DRF reads the body lazily, so Django's size limit surfaces here rather than in middleware.
        return Response(error_body("Request body too large.", 413, "request_too_large"), status=413)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, UpstreamError):
        body = broker_error_body(exc)
        if exc.retry_after:
            headers["Retry-After"] = retry_after_header(exc.retry_after)
        return Response(body, status=body["status_code"], headers=headers)

    if isinstance(exc, ApplicationError):
        body = error_body(exc.message, exc.status_code, exc.code, exc.errors and field_errors(exc.errors))
        if exc.retry_after:
            headers["Retry-After"] = retry_after_header(exc.retry_after)
        return Response(body, status=exc.status_code, headers=headers)

    if isinstance(exc, exceptions.ValidationError):
        errors = field_errors(exc.detail) or {NON_FIELD: ["Invalid input."]}
        body = error_body(_first_message(errors), 400, "validation_error", errors)
        return Response(body, status=400)

    if isinstance(exc, exceptions.APIException):
        # NotAuthenticated and AuthenticationFailed carry auth_header, Throttled carries wait.
        if auth_header := getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = auth_header
        if wait := getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(wait))
        detail: object = exc.detail
        code: object = exc.get_codes() if not isinstance(detail, (dict, list)) else exc.default_code
        if isinstance(detail, dict):
            code = detail.get("code", exc.default_code)
            detail = detail.get("detail", exc.default_detail)
        status_code = exc.status_code
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            status_code = status.HTTP_401_UNAUTHORIZED
        return Response(error_body(detail, status_code, str(code)), status=status_code, headers=headers)

    request = context.get("request")
    logger.exception("Unhandled error on %s %s", getattr(request, "method", "?"), getattr(request, "path", "?"))
    return Response(error_body("Internal server error.", 500, "server_error"), status=500)


def _json_error_view(status_code, code, detail):
    def view(request, exception=None):
        return JsonResponse(error_body(detail, status_code, code), status=status_code)

    return view


handler400 = _json_error_view(400, "bad_request", "Bad request.")
handler403 = _json_error_view(403, "permission_denied", "You do not have permission to perform this action.")
handler404 = _json_error_view(404, "not_found", "Not found.")
handler500 = _json_error_view(500, "server_error", "Internal server error.")
