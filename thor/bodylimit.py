"""The request body cap, enforced before Django stores any of the body.

Django's ASGI handler writes the whole body to a temporary file (on disk past
FILE_UPLOAD_MAX_MEMORY_SIZE) before a view or DATA_UPLOAD_MAX_MEMORY_SIZE ever sees it, so a
300 MB upload to a public URL fills the disk first and is refused afterwards. This middleware
sits between the ASGI server and Django: a `Content-Length` over THOR_MAX_REQUEST_BYTES is refused
without reading a byte, and a body without one (chunked) is counted as it arrives and refused the
moment it passes the cap; Django then sees a disconnect and stores nothing more.

This is where Thor enforces the cap; a reverse proxy in front may add its own (nginx
`client_max_body_size`), which only needs to be no larger.
"""

import json

from django.conf import settings

from thor.errors import error_body

_TOO_LARGE = error_body("Request body too large.", 413, "request_too_large")


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestBodyLimit:
    """ASGI middleware: HTTP bodies over `max_bytes` (THOR_MAX_REQUEST_BYTES) answer 413 unread."""

    def __init__(self, app, max_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes if self.max_bytes is not None else settings.THOR_MAX_REQUEST_BYTES
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            return await _answer_too_large(send)

        received = 0
        refused = False
        response_started = False

        async def counting_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now and tell the app the client has gone: Django drops the request.
                    refused = True
                    if not response_started:
                        await _answer_too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal response_started
            if refused:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


async def _answer_too_large(send) -> None:
    body = json.dumps(_TOO_LARGE).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read, so the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
