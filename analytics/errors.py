"""The analytics reads' errors: one ApplicationError each, answered by Thor's one handler."""

from rest_framework import status

from thor.errors import ApplicationError


class UnknownChoice(ApplicationError):
    def __init__(self, field: str, value: str, choices: list[str]):
        listing = ", ".join(choices) or "none yet"
        super().__init__(
            f"Unknown {field} {value!r}. Valid choices: {listing}.",
            code="not_found",
            status_code=status.HTTP_404_NOT_FOUND,
            errors={field: [f"Valid choices: {listing}."]},
        )


class ChainNotSnapshotted(Exception):
    """No snapshot of this underlying is stored yet (a read cannot answer; the view may take the first one)."""

    def __init__(self, underlying: str):
        super().__init__(underlying)
        self.underlying = underlying


class ChainUnavailable(ApplicationError):
    def __init__(self, underlying: str):
        super().__init__(
            f"No snapshot of the {underlying} chain yet and none could be taken; try again shortly.",
            code="market_data_unavailable",
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
