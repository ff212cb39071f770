import io
import json
import logging
import time

import pytest
from django_redis.exceptions import ConnectionInterrupted
from pythonjsonlogger.json import JsonFormatter

from thor.logging import OccasionalFilter, correlation_id_var


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
