import io
import json
import logging
import time

import pytest
from django_redis.exceptions import ConnectionInterrupted
from pythonjsonlogger.json import JsonFormatter

from thor.logging import OccasionalFilter, RedactingJsonFormatter, correlation_id_var


@pytest.fixture
def log_output():
    """What the configured console handler writes, captured instead of going to stderr."""
    handler = next(h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def lines(buffer):
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


class TestJsonLogLines:
    def test_a_line_is_json_with_the_correlation_id(self, log_output):
        token = correlation_id_var.set("req-42")
        try:
            logging.getLogger("thor.test").warning("order %s placed", "A1")
        finally:
            correlation_id_var.reset(token)

        [line] = lines(log_output)
        assert line["message"] == "order A1 placed"
        assert line["correlation_id"] == "req-42"
        assert line["level"] == "WARNING"
        assert line["logger"] == "thor.test"
        assert "time" in line

    def test_outside_a_request_the_id_is_a_dash(self, log_output):
        logging.getLogger("thor.test").warning("beat tick")

        assert lines(log_output)[0]["correlation_id"] == "-"

    @pytest.mark.django_db
    @pytest.mark.urls("thor.tests.urls")
    def test_a_request_error_is_one_json_line_with_the_request_id_and_traceback(self, log_output, alice_client):
        alice_client.get("/api/test/broken/", HTTP_X_CORRELATION_ID="req-500")

        [line] = [line for line in lines(log_output) if line["logger"] == "thor.errors"]
        assert line["correlation_id"] == "req-500"
        assert "RuntimeError" in line["exc_info"]


def test_celery_workers_keep_the_json_handlers():
    from thor.celery import app

    assert app.conf.worker_hijack_root_logger is False


def an_ignored_redis_error(logger: logging.Logger) -> None:
    """What django-redis logs for each cache call it skips while Redis is down."""
    try:
        try:
            raise ConnectionError("Error 111 connecting to redis://:hunter2@cache.internal:6379.")
        except ConnectionError as cause:
            raise ConnectionInterrupted(connection=None) from cause
    except ConnectionInterrupted:
        logger.exception("Exception ignored")


class TestOccasionalFilter:
    def test_lets_one_line_an_interval_through_without_the_traceback_or_the_address(self, caplog):
        logger = logging.getLogger("thor.test.occasional")
        # Its clock is time.monotonic, which no test clock moves: a short interval, really waited out.
        logger.addFilter(OccasionalFilter(every_seconds=0.3))
        try:
            for _ in range(40):
                an_ignored_redis_error(logger)
            time.sleep(0.35)
            an_ignored_redis_error(logger)
        finally:
            logger.filters.clear()

        assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
            (
                "WARNING",
                "Exception ignored (ConnectionInterrupted from ConnectionError); more like it are held back for 0.3 s",
            )
        ] * 2
        assert not [record for record in caplog.records if record.exc_info] and "hunter2" not in caplog.text

    def test_django_redis_logs_through_it(self):
        assert any(isinstance(f, OccasionalFilter) for f in logging.getLogger("django_redis.cache").filters)


SECRETS = ("eyJhbGciOi.SECRET-JWT.sig", "SECRET-TICKET", "SECRET-CODE@", "SECRET-STATE", "SECRET-API")


class TestNoSecretInALine:
    """Query-string secrets (issue 23): whatever logs a URL, its tokens, tickets and codes never reach the line."""

    @pytest.mark.parametrize(
        ("message", "args"),
        [
            # uvicorn's handshake line, at INFO.
            ('%s - "WebSocket %s" [accepted]', ("127.0.0.1:5000", "/ws/orders/7?token=eyJhbGciOi.SECRET-JWT.sig")),
            ('%s - "WebSocket %s" 403', ("127.0.0.1:5000", "/ws/orders?x=1&ticket=SECRET-TICKET")),
            # uvicorn's trace of a scope: the query string, and the subprotocol pair with the access token.
            ("ASGI [1] Started scope=%s", ({"query_string": b"ticket=SECRET-TICKET"},)),
            ("ASGI [1] Started scope=%s", ({"subprotocols": ["bearer", "eyJhbGciOi.SECRET-JWT.sig"]},)),
            ("ASGI [1] Started scope=%s", ({"subprotocols": ["ticket", "SECRET-TICKET"]},)),
            # uvicorn's debug lines: the handshake's headers as websockets prints them.
            ("< sec-websocket-protocol: %s", ("bearer, eyJhbGciOi.SECRET-JWT.sig",)),
            ("< sec-websocket-protocol: %s", ("ticket, SECRET-TICKET",)),
            ("< cookie: %s", ("sessionid=SECRET-STATE; csrftoken=x",)),
            ("< authorization: %s", ("Basic SECRET-API",)),
            # A client library's error naming the URL it called, and a callback URL inside another's query.
            ("call failed: %s", ("https://api.test/oauth/token?code=SECRET-CODE%40&state=SECRET-STATE",)),
            ("redirect to %s", ("https://spa.test/cb?next=%2Fx%3Fcode%3DSECRET-CODE%40%26state%3DSECRET-STATE",)),
            ("seed 000 %s", ("/api/auth/broker/test-oauth?api_key=k&api_secret=SECRET-API",)),
            ("header %s", ("Authorization: Bearer eyJhbGciOi.SECRET-JWT.sig",)),
        ],
    )
    def test_a_secret_in_a_message_is_redacted(self, log_output, message, args):
        logging.getLogger("uvicorn.error").warning(message, *args)

        text = log_output.getvalue()
        assert "[redacted]" in text
        assert not [secret for secret in SECRETS if secret in text]

    @pytest.mark.parametrize(
        "message",
        [
            "GET /api/orders?status=COMPLETE&limit=20&error_code=x",
            "< sec-websocket-protocol: bearer",
            # The subprotocol uvicorn answers with, last in its message: the line's next key is no ticket.
            "> Sec-WebSocket-Protocol: ticket",
            "a ticket expired; bearer token missing",
            "status_code=401 code=4401",
        ],
    )
    def test_what_is_no_secret_stays_readable(self, log_output, message):
        logging.getLogger("uvicorn.error").warning(message)

        [line] = lines(log_output)
        assert line["message"] == message and line["correlation_id"] == "-"

    def test_a_traceback_naming_a_url_is_redacted(self, log_output):
        try:
            raise ConnectionError("Max retries exceeded with url: /oauth/token?code=SECRET-CODE@&state=SECRET-STATE")
        except ConnectionError:
            logging.getLogger("thor.test").exception("token exchange failed")

        [line] = lines(log_output)
        assert "ConnectionError" in line["exc_info"] and "code=[redacted]" in line["exc_info"]
        assert not [secret for secret in SECRETS if secret in log_output.getvalue()]

    def test_djangos_request_log_names_the_request_without_its_secrets(self, log_output, rf):
        # django.request logs a 5xx with the request in its extras, whose repr is the full path.
        request = rf.get("/api/auth/broker/callback", {"request_token": "SECRET-TICKET", "state": "SECRET-STATE"})
        logging.getLogger("django.request").error("Internal Server Error: %s", request.path, extra={"request": request})

        [line] = lines(log_output)
        assert "/api/auth/broker/callback?request_token=[redacted]" in line["request"]
        assert not [secret for secret in SECRETS if secret in log_output.getvalue()]

    def test_the_servers_loggers_write_through_the_redacting_handler(self):
        for name in ("uvicorn.error", "uvicorn.asgi", "_granian"):
            logger = logging.getLogger(name)
            # pytest adds its capturing handlers to every logger that does not propagate.
            [handler] = [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]
            assert isinstance(handler.formatter, RedactingJsonFormatter) and not logger.propagate, name
