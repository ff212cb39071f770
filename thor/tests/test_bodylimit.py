"""The body cap holds at the ASGI layer, before Django stores a byte: for Content-Length and chunked bodies."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync

from thor.bodylimit import RequestBodyLimit

pytestmark = pytest.mark.django_db

CAP = 1024 * 1024
CHUNK = 64 * 1024
TOO_LARGE = {"detail": "Request body too large.", "status_code": 413, "code": "request_too_large"}


class Upload:
    """The client side of one request: body chunks from a generator, with a count of what was read."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.bytes_read = 0
        self.sent = []
        self.finished = False

    async def receive(self):
        if self.finished:
            # As a server does: nothing more until the client goes (the app stops listening first).
            await asyncio.Event().wait()
        chunk = next(self.chunks, None)
        if chunk is None:
            self.finished = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self.bytes_read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message):
        self.sent.append(message)

    @property
    def status(self):
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def body(self):
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def chunks_of(total: int):
    sent = 0
    while sent < total:
        yield b"x" * min(CHUNK, total - sent)
        sent += CHUNK


def http_scope(path="/api/brokers/kite/postback/", headers=()):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def serve(app, scope, upload):
    async_to_sync(app)(scope, upload.receive, upload.send)
    return upload


@pytest.fixture
def thor_app():
    """What uvicorn serves."""
    from thor.asgi import application

    return application


class TestChunkedBodies:
    def test_a_huge_body_is_refused_after_at_most_the_cap(self, thor_app):
        upload = serve(thor_app, http_scope(), Upload(chunks_of(64 * CAP)))

        assert upload.status == 413 and json.loads(upload.body) == TOO_LARGE
        assert upload.bytes_read <= CAP + CHUNK

    def test_a_body_at_the_cap_passes(self):
        seen = []

        async def app(scope, receive, send):
            while True:
                message = await receive()
                seen.append(message)
                if not message.get("more_body"):
                    break
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        upload = serve(RequestBodyLimit(app, max_bytes=CAP), http_scope(), Upload(chunks_of(CAP)))

        assert upload.status == 204
        assert sum(len(m["body"]) for m in seen) == CAP

    def test_the_app_cannot_answer_after_the_refusal(self):
        async def stubborn(scope, receive, send):
            while (await receive())["type"] != "http.disconnect":
                pass
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"accepted"})

        upload = serve(RequestBodyLimit(stubborn, max_bytes=10), http_scope(), Upload([b"a" * 8, b"b" * 8]))

        assert [m.get("status") for m in upload.sent if m["type"] == "http.response.start"] == [413]
        assert b"accepted" not in upload.body


class TestDeclaredLength:
    def test_a_content_length_over_the_cap_is_refused_unread(self, thor_app):
        headers = [(b"content-length", str(100 * CAP).encode())]

        upload = serve(thor_app, http_scope(headers=headers), Upload(chunks_of(100 * CAP)))

        assert upload.status == 413 and json.loads(upload.body) == TOO_LARGE
        assert upload.bytes_read == 0

    def test_the_cap_is_the_setting(self, thor_app, settings):
        settings.THOR_MAX_REQUEST_BYTES = 100
        headers = [(b"content-length", b"101")]

        upload = serve(thor_app, http_scope(headers=headers), Upload([b"{" * 101]))

        assert upload.status == 413


class TestOrdinaryBodies:
    def test_pass_through_unchanged(self):
        seen = []

        async def app(scope, receive, send):
            seen.append(await receive())
            seen.append(await receive())
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
            await send({"type": "http.response.body", "body": b"ok"})

        upload = Upload([b'{"a": ', b"1}"])

        serve(RequestBodyLimit(app), http_scope(), upload)

        assert seen == [
            {"type": "http.request", "body": b'{"a": ', "more_body": True},
            {"type": "http.request", "body": b"1}", "more_body": True},
        ]
        assert upload.status == 200 and upload.body == b"ok"
        assert upload.sent[0]["headers"] == [(b"x-app", b"1")]

    def test_reach_django_whole(self, thor_app):
        body = json.dumps({"email": "someone@acme.test"}).encode()
        upload = Upload([body[:7], body[7:]])

        serve(thor_app, http_scope("/api/auth/token/", [(b"content-length", str(len(body)).encode())]), upload)

        assert upload.status == 400
        assert json.loads(upload.body)["errors"] == {"password": ["This field is required."]}

    def test_websockets_are_not_touched(self):
        calls = []

        async def app(scope, receive, send):
            calls.append(scope["type"])

        async_to_sync(RequestBodyLimit(app, max_bytes=0))({"type": "websocket"}, None, None)

        assert calls == ["websocket"]
