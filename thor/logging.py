import contextvars
import logging

correlation_id_var = contextvars.ContextVar("correlation_id", default="-")


class CorrelationIdFilter(logging.Filter):
    """Stamps every log record with the correlation id of the request being served."""

    def filter(self, record):
        record.correlation_id = correlation_id_var.get()
        return True


class OccasionalFilter(logging.Filter):
    """Lets a logger's records through at most once every `every_seconds`, each as one line (the exception's type
    instead of its traceback): for a library that logs every call an outage fails. django-redis logs each cache
    call it could not make, traceback and all, which with Redis down is several per request."""

    def __init__(self, every_seconds: float = 60.0):
        super().__init__()
        from thor.coordination import OccasionalWarning

        self._gate = OccasionalWarning(logging.getLogger(__name__), every_seconds)

    def filter(self, record):
        if not self._gate.due():
            return False
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            cause = error.__cause__ or error.__context__
            # Types only: a connection error's text may carry the server's address and credentials.
            kinds = type(error).__name__ + (f" from {type(cause).__name__}" if cause is not None else "")
            record.msg = (
                f"{record.getMessage()} ({kinds}); more like it are held back for {self._gate.every_seconds:g} s"
            )
            record.args, record.exc_info, record.exc_text = (), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
