"""Keeps the Schwab stream (market.schwab_stream) running on the tenant's Schwab market-data session.

One connection at a time, in the runner's own thread: it reads the session, asks Schwab where its streamer
is (`userPreference`, through the Schwab adapter), connects, logs in, subscribes the watched US symbols and
follows them until asked to stop, the connection drops, or the session moves to another connection. Why it
reconnects, refreshes and backs off as it does: market.schwab_stream's docstring.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection as db_connection
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException
from websockets.sync.client import connect

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.schwab import SchwabAdapter
from brokers.models import BrokerConnection, BrokerKind
from brokers.registry import adapter_for
from brokers.services.tokens import connection_tokens_refresh
from market.schwab_stream import (
    CLOSE_CONNECTION,
    MAX_FRAME_BYTES,
    MAX_RECONNECT_SECONDS,
    MAX_REFUSED_BACKOFF_SECONDS,
    RECONNECT_SECONDS,
    SESSION_CHECK_SECONDS,
    SYNC_SECONDS,
    SchwabStream,
    StreamLost,
    StreamRefused,
    wanted_symbols,
)
from market.selectors import market_data_connection
from market.stream_gate import SessionGate, session_read

logger = logging.getLogger("market.schwab_stream")

OPEN_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SchwabSession:
    connection_id: int
    access_token: str = field(repr=False)


def schwab_market_data_session(tenant_slug: str = "") -> SchwabSession | None:
    """The session of the tenant's Schwab market-data connection (market.selectors.market_data_connection: its
    own market-data login first, as Kite's stream and both quote services choose theirs)."""
    connection = market_data_connection(tenant_slug=tenant_slug, kind=BrokerKind.SCHWAB)
    return None if connection is None else SchwabSession(connection.id, connection.access_token)


def streamer_info(session: SchwabSession) -> dict[str, str]:
    """Where the session's streamer is, and the ids its requests carry (a REST call to Schwab)."""
    connection = BrokerConnection.objects.select_related("app", "app__tenant").get(pk=session.connection_id)
    adapter = adapter_for(connection)
    if not isinstance(adapter, SchwabAdapter):
        raise BrokerError("Not a Schwab connection.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
    return adapter.streamer_info()


class SchwabStreamRunner:
    """Keeps a Schwab stream running on the current Schwab market-data session until `stop` is set."""

    def __init__(
        self,
        *,
        tenant_slug: str = "",
        sync_seconds: float = SYNC_SECONDS,
        session_check_seconds: float = SESSION_CHECK_SECONDS,
        reconnect_seconds: float = RECONNECT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.tenant_slug = tenant_slug
        self.sync_seconds = sync_seconds
        self.session_check_seconds = session_check_seconds
        self.reconnect_seconds = reconnect_seconds
        self.clock = clock
        self.logins = 0  # successful logins, for tests and the log
        self.stream: SchwabStream | None = None
        # Drops in a row; whether the connection's token was refreshed since the last login.
        self._failures = 0
        self._refreshed = False
        self._gate: SessionGate[SchwabSession] = SessionGate(
            logger,
            "No Schwab market-data session (an active connection of a shared Schwab app); waiting",
            token=lambda session: session.access_token,
            backoff_seconds=session_check_seconds,
            most_seconds=MAX_REFUSED_BACKOFF_SECONDS,
            clock=clock,
        )

    def run(self, stop: threading.Event) -> None:
        try:
            self._run(stop)
        finally:
            db_connection.close()  # this thread's

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            session = self._session()
            if not self._gate.open_for(session):
                stop.wait(self.session_check_seconds)
                continue
            try:
                self._stream(session, stop)
            except StreamRefused as refused:
                logger.warning("Schwab refused the stream's session (code %s)", refused.code)
                self._refused(session, refused)
            except (StreamLost, WebSocketException, OSError, TimeoutError, BrokerError, ObjectDoesNotExist) as lost:
                self._failures += 1
                delay = min(self.reconnect_seconds * 2 ** (self._failures - 1), MAX_RECONNECT_SECONDS)
                logger.warning("Schwab stream lost (%s); reconnecting in %.1f s", type(lost).__name__, delay)
                stop.wait(delay)
            except Exception:
                logger.exception("Schwab stream failed; reconnecting")
                stop.wait(MAX_RECONNECT_SECONDS)

    def _refused(self, session: SchwabSession, refused: StreamRefused) -> None:
        """What follows a refusal: a new token on the connection is tried at once; the refused one is refreshed
        once (another login taking the connection is not the token's fault), then waits out a backoff that
        doubles."""
        current = self._session()
        if current is not None and current.access_token != session.access_token:
            return
        if refused.code != CLOSE_CONNECTION and not self._refreshed:
            self._refreshed = True
            self._refresh(session)
            return
        self._gate.refused(session)

    def _stream(self, session: SchwabSession, stop: threading.Event) -> None:
        """One connection, followed until `stop`, a drop, or the session moving to another connection."""
        try:
            info = streamer_info(session)
        except BrokerError as error:
            if error.code == BrokerErrorCode.TOKEN_EXPIRED:
                raise StreamRefused(401, "userPreference refused the token") from None
            raise
        try:
            socket = connect(
                info["streamerSocketUrl"], open_timeout=OPEN_TIMEOUT_SECONDS, close_timeout=1, max_size=MAX_FRAME_BYTES
            )
        except (InvalidURI, InvalidHandshake) as error:
            raise StreamLost(f"Could not open the streamer: {type(error).__name__}") from None
        with socket:
            self.stream = stream = SchwabStream(socket, info, clock=self.clock)
            stream.login(session.access_token)
            self.logins += 1
            self._failures, self._refreshed = 0, False
            self._gate.accepted()
            logger.info("Schwab stream logged in (%d)", self.logins)
            self._follow(stream, session, stop)

    def _follow(self, stream: SchwabStream, session: SchwabSession, stop: threading.Event) -> None:
        next_session_check = self.clock() + self.session_check_seconds
        while not stop.is_set():
            try:
                wanted = wanted_symbols()
            except Exception:
                logger.exception("Schwab stream could not read the watched symbols")
            else:
                stream.sync(wanted)
            stream.pump(self.sync_seconds)
            if self.clock() >= next_session_check:
                next_session_check = self.clock() + self.session_check_seconds
                current = self._session()
                # A refreshed token changes nothing here (the stream outlives it); another connection does.
                if current is None or current.connection_id != session.connection_id:
                    logger.info("Schwab market-data session changed; reconnecting the stream")
                    return

    def _refresh(self, session: SchwabSession) -> None:
        try:
            outcome = connection_tokens_refresh(connection_id=session.connection_id, force=True)
        except Exception:
            logger.exception("Schwab stream could not refresh its connection's token")
            return
        logger.info("Schwab stream's connection token refresh: %s", outcome.action)

    def _session(self) -> SchwabSession | None:
        return session_read(schwab_market_data_session, self.tenant_slug, logger=logger, stream="Schwab stream")
