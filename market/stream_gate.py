"""How a market stream's runner (Kite's in market.ticks, Schwab's in market.schwab_runner) reads its market-data
session, and when it may connect on it.

Not while there is none: it waits, and says so once in the log, not at every check. Not while the session's
token waits out its refusal: a token the broker refused is tried again only after a backoff that doubles with
each refusal of it in a row, up to a ceiling; a new token on the connection is tried at once. A dead token must
not knock at the broker every few seconds.
"""

import logging
import time
from collections.abc import Callable
from typing import Generic, TypeGuard, TypeVar

from django.db import close_old_connections

Session = TypeVar("Session")


def session_read(
    read: Callable[[str], Session | None], tenant_slug: str, *, logger: logging.Logger, stream: str
) -> Session | None:
    """The session `read` finds for the tenant, over a database connection that is not stale (the runner's thread
    lives for days); None, logged as `stream`'s, when reading fails: the runner checks again later."""
    close_old_connections()
    try:
        return read(tenant_slug)
    except Exception:
        logger.exception("%s could not read its session", stream)
        return None


class SessionGate(Generic[Session]):
    """`token` names what a refusal holds back: the session itself, or the access token it carries."""

    def __init__(
        self,
        logger: logging.Logger,
        waiting: str,
        *,
        token: Callable[[Session], object],
        backoff_seconds: float,
        most_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._logger, self._waiting, self._token = logger, waiting, token
        self._backoff_seconds, self._most_seconds = backoff_seconds, most_seconds
        self._clock = clock
        self._waiting_logged = False
        self._refused: object = None
        self._refusals, self._retry_at = 0, 0.0

    def open_for(self, session: Session | None) -> TypeGuard[Session]:
        """Whether to connect on `session` now."""
        if session is None:
            if not self._waiting_logged:
                self._logger.info(self._waiting)
                self._waiting_logged = True
            return False
        if self._token(session) == self._refused and self._clock() < self._retry_at:
            return False
        self._waiting_logged = False
        return True

    def refused(self, session: Session) -> None:
        """The broker refused the session's token: its backoff starts, twice last time's when it was refused last."""
        token = self._token(session)
        self._refusals = self._refusals + 1 if token == self._refused else 1
        self._refused = token
        self._retry_at = self._clock() + min(self._backoff_seconds * 2**self._refusals, self._most_seconds)

    def accepted(self) -> None:
        """A session was streamed on: no refusal counts any more."""
        self._refused, self._refusals = None, 0
