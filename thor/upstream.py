"""The failure of a service Thor calls on a user's behalf (a broker), in terms the base layer can answer.

`brokers.adapters.errors.BrokerError` extends it; `thor.errors` maps it to HTTP and `thor.snapshots`
falls back to the last-good copy on it, without either knowing about brokers.
"""

from enum import StrEnum


class UpstreamErrorCode(StrEnum):
    TOKEN_EXPIRED = "token_expired"
    RATE_LIMITED = "rate_limited"
    # The user's own order rate (Kite: 10 a second, exchange rule) is spent: the call was not sent.
    ORDER_RATE_LIMITED = "order_rate_limited"
    # The proxy a call must leave through (a Kite order's static-IP egress) could not be reached: not sent.
    EGRESS_UNREACHABLE = "egress_unreachable"
    REJECTED = "rejected"
    INVALID_INPUT = "invalid_input"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    # The broker took the request but did not say which order it made (Schwab without a Location).
    UNCONFIRMED = "unconfirmed"


class UpstreamError(Exception):
    """`permanent` means retrying cannot help; `broker_message` is the service's own words, for the user."""

    def __init__(
        self,
        message: str,
        *,
        code: UpstreamErrorCode,
        permanent: bool = False,
        retry_after: float | None = None,
        broker_message: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.code = UpstreamErrorCode(code)
        self.permanent = permanent
        self.retry_after = retry_after
        self.broker_message = broker_message

    def __repr__(self):
        return f"{type(self).__name__}({self.code}, permanent={self.permanent}, {self.message!r})"
