from enum import StrEnum


class BrokerErrorCode(StrEnum):
    TOKEN_EXPIRED = "token_expired"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"
    INVALID_INPUT = "invalid_input"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"


class BrokerError(Exception):
    """Every broker failure, whatever the broker. `permanent` means retrying cannot help."""

    def __init__(
        self,
        message: str,
        *,
        code: BrokerErrorCode,
        permanent: bool = False,
        retry_after: float | None = None,
        broker_message: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.code = BrokerErrorCode(code)
        self.permanent = permanent
        self.retry_after = retry_after
        self.broker_message = broker_message

    def __repr__(self):
        return f"BrokerError({self.code}, permanent={self.permanent}, {self.message!r})"
