import contextvars
import logging
import re

from pythonjsonlogger.json import JsonFormatter

correlation_id_var = contextvars.ContextVar("correlation_id", default="-")

# Query parameters that carry a secret somewhere in Thor or a broker's flow: socket tickets and tokens,
# OAuth codes and states, Kite's request_token, seed 000's api_secret, Schwab's session, refresh tokens.
SECRET_QUERY_PARAMETERS = (
    "token",
    "ticket",
    "code",
    "state",
    "session",
    "api_secret",
    "client_secret",
    "request_token",
    "access_token",
    "id_token",
    "refresh",
    "refresh_token",
    "password",
)
REDACTED = "[redacted]"
# A parameter after ?, & or ; (or their percent-encoded forms, for a URL inside another's query), or opening a
# quoted query string (uvicorn's trace lines print the scope's `query_string`), up to the next separator. The
# value stops at a quote or backslash too: the line may be JSON or a repr.
_SECRET_IN_QUERY = re.compile(
    r"((?:[?&;'\"]|%3[Ff]|%26)(?:" + "|".join(SECRET_QUERY_PARAMETERS) + r")(?:=|%3[Dd]))"
    r"(?:%(?!26)|[^&;#%\s\"'\\<>])*"
)
# A bearer token after its scheme (`Authorization: Bearer ...`), and the WebSocket subprotocol pairs `bearer`,
# `<token>` and `ticket`, `<ticket>` as uvicorn's trace prints a scope (`['bearer', '...']`) and its debug lines
# the handshake's headers (`< sec-websocket-protocol: bearer, ...`). Eight characters or more: a token, not
# a word of a sentence ("bearer token missing").
# Quotes inside a JSON line's strings are ' or \" (a bare " ends the string: the key after it is no token).
_QUOTE = r"""(?:'|\\")?"""
_BEARER_TOKEN = re.compile(
    rf"(\bbearer(?:{_QUOTE},\s*{_QUOTE}|\s+)|\bticket{_QUOTE},\s*{_QUOTE})[A-Za-z0-9._~+/=-]{{8,}}", re.IGNORECASE
)
# Headers that are credentials whatever their scheme, as those debug lines print them (`< cookie: sessionid=...`).
_CREDENTIAL_HEADER = re.compile(
    r"(\b(?:authorization|proxy-authorization|cookie|set-cookie|x-api-key):\s*)[^\"\\\n]+",
    re.IGNORECASE,
)


def redact_secrets(text: str) -> str:
    text = _SECRET_IN_QUERY.sub(lambda match: match.group(1) + REDACTED, text)
    text = _BEARER_TOKEN.sub(lambda match: match.group(1) + REDACTED, text)
    return _CREDENTIAL_HEADER.sub(lambda match: match.group(1) + REDACTED, text)


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


class RedactingJsonFormatter(JsonFormatter):
    """Thor's JSON lines with every secret query parameter's value replaced, wherever it appears in the line.

    The whole line, not the message: a URL with a ticket or an OAuth code reaches a log through uvicorn's
    handshake lines (`"WebSocket /ws/orders/7?ticket=..."`), a traceback (a client library's error names
    the URL it called) or a record's extras (django.request's `request`, whose repr is the full path).
    """

    def format(self, record):
        return redact_secrets(super().format(record))
