import contextvars
import logging

correlation_id_var = contextvars.ContextVar("correlation_id", default="-")


class CorrelationIdFilter(logging.Filter):
    """Stamps every log record with the correlation id of the request being served."""

    def filter(self, record):
        record.correlation_id = correlation_id_var.get()
        return True
