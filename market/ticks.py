"""The market stream: Kite's WebSocket ticks through the official `KiteTicker`, into Redis and the tick hub.

One stream per process (`manage.py run_market_stream`) on a tenant's market-data session: the active
connection of a tenant's shared Kite app (never a user's own app, whose budget is the customer's), the one
analytics quotes through. It keeps subscribed, in full mode, the tokens in the watched set
(`market.services.ticks_watch`), and writes each tick's last price to the last-prices hash
(`market.selectors.last_prices`), then hands each batch KiteTicker gives it to every server process at once
(market.tickhub, whose registry knows the sockets holding or watching each token: accounts.ticks). In the embedded mode (`make run`) it runs on a
thread of the server's process instead (`start_embedded_market_stream`), its store and layer in memory.

KiteTicker reconnects by itself after a drop and resends its subscriptions; on every connect the stream
also sends the whole watched set, so nothing added while it was away is missed. A refused upgrade (403:
the access token expired or was replaced) stops that ticker, and the runner reads the connection again, so
a new token is picked up without a restart; the refused token itself is tried again only after a backoff
that doubles (up to 5 minutes).

Twisted's reactor, which KiteTicker runs on, is one per process and cannot be restarted: the first ticker
starts it in a daemon thread and it runs until the process ends; every call on a ticker goes through it.
"""

import gc
import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from kiteconnect import KiteTicker
from twisted.internet import reactor

from market import caches
from market.selectors import market_data_connection
from market.stream_gate import SessionGate, session_read
from market.tickhub import ticks_deliver
from market.us_tokens import is_us_token

logger = logging.getLogger("market.ticks")

# Kite's limit: 3,000 instruments on one connection (3 connections per API key; this stream opens one).
MAX_TOKENS = 3000
SYNC_SECONDS = 1.0
# How often the runner looks for a session when there is none, or for a new token while streaming.
SESSION_CHECK_SECONDS = 5.0
MAX_REFUSED_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class StreamSession:
    api_key: str
    access_token: str
    connection_id: int


def market_data_session(tenant_slug: str = "") -> StreamSession | None:
    """The session the stream runs on: the market-data connection quotes go through (market.selectors)."""
    connection = market_data_connection(tenant_slug=tenant_slug)
    if connection is None:
        return None
    return StreamSession(connection.app.api_key, connection.access_token, connection.id)


def ticker_root() -> str:
    """Where KiteTicker connects: THOR_KITE_TICKER_ROOT, else the sandbox's `/ws` beside its API in
    development, else Kite's own."""
    if settings.THOR_KITE_TICKER_ROOT:
        return settings.THOR_KITE_TICKER_ROOT
    if settings.THOR_KITE_IS_SANDBOX:
        root = settings.THOR_KITE_API_ROOT.rstrip("/")
        return root.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/ws"
    return KiteTicker.ROOT_URI


def _on_reactor(function, *args) -> None:
    reactor.callFromThread(function, *args)


class MarketStream:
    """One KiteTicker connection kept subscribed to the watched tokens (call `sync()` now and then)."""

    def __init__(self, session: StreamSession, *, root: str | None = None):
        self.session = session
        self.ticker = KiteTicker(session.api_key, session.access_token, root=root or ticker_root())
        self.ticker.on_connect = self._on_connect
        self.ticker.on_ticks = self._on_ticks
        self.ticker.on_error = self._on_error
        self.ticker.on_noreconnect = self._on_noreconnect
        self.refused = threading.Event()
        self.connections = 0
        self._subscribed: set[int] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        if reactor.running:
            _on_reactor(self.ticker.connect)
        else:
            self.ticker.connect(threaded=True)

    def stop(self) -> None:
        _on_reactor(self._close)

    def sync(self) -> None:
        """Subscribe what was added to the watched set, unsubscribe what left it (when connected)."""
        wanted = self._wanted()
        with self._lock:
            added, removed = wanted - self._subscribed, self._subscribed - wanted
            if not added and not removed:
                return
            self._subscribed = set(wanted)
        _on_reactor(self._apply, sorted(added), sorted(removed))

    # --- on the reactor's thread --------------------------------------------------------------

    def _close(self) -> None:
        self.ticker.stop_retry()
        if self.ticker.ws is not None:
            self.ticker.close()

    def _apply(self, added: list[int], removed: list[int]) -> None:
        if not self.ticker.is_connected():
            return  # the next connect subscribes the whole watched set
        if removed:
            self.ticker.unsubscribe(removed)
        if added:
            self.ticker.subscribe(added)
            self.ticker.set_mode(self.ticker.MODE_FULL, added)

    def _on_connect(self, ticker: KiteTicker, _response) -> None:
        self.connections += 1
        # What the connection set up (Twisted's and autobahn's machinery, imported on first use) lives as long as
        # the process: out of the collector's sight, a full collection no longer scans it while a batch waits.
        gc.freeze()
        try:
            wanted = self._wanted()
        except Exception:
            logger.exception("Market stream could not read the watched tokens")
            return
        with self._lock:
            self._subscribed = wanted
        if wanted:
            tokens = sorted(wanted)
            ticker.subscribe(tokens)
            ticker.set_mode(ticker.MODE_FULL, tokens)
        logger.info("Market stream connected (%d), %d tokens subscribed", self.connections, len(wanted))

    def _on_ticks(self, _ticker: KiteTicker, ticks: list[dict]) -> None:
        prices = {tick["instrument_token"]: str(Decimal(str(tick["last_price"]))) for tick in ticks}
        # Stored, and one message for the whole batch to every server process (market.tickhub), whatever it holds.
        ticks_deliver(prices, received_at=time.time())

    def _on_error(self, _ticker: KiteTicker, code: int, reason) -> None:
        if code == 0:
            logger.warning("Kite ticker error: %s", reason)
        elif "403" in str(reason):
            # The token is no good: retrying with it is pointless; the runner reads the connection again.
            logger.warning("Kite ticker refused the session; reading the connection again")
            self.refused.set()
            self.ticker.stop_retry()

    def _on_noreconnect(self, _ticker: KiteTicker) -> None:
        self.refused.set()

    def _wanted(self) -> set[int]:
        # US symbols' tokens are the Schwab stream's (market.schwab_stream): Kite does not know them.
        watched = {token for token in caches.watched_tokens() if not is_us_token(token)}
        if len(watched) > MAX_TOKENS:
            logger.warning("%d tokens watched; Kite streams %d on a connection", len(watched), MAX_TOKENS)
            watched = set(sorted(watched)[:MAX_TOKENS])
        return watched


class MarketStreamRunner:
    """Keeps a stream running on the current market-data session until `stop` is set."""

    def __init__(
        self,
        *,
        tenant_slug: str = "",
        root: str | None = None,
        sync_seconds: float = SYNC_SECONDS,
        session_check_seconds: float = SESSION_CHECK_SECONDS,
    ):
        self.tenant_slug = tenant_slug
        self.root = root
        self.sync_seconds = sync_seconds
        self.session_check_seconds = session_check_seconds
        self.stream: MarketStream | None = None

    def run(self, stop: threading.Event) -> None:
        gate: SessionGate[StreamSession] = SessionGate(
            logger,
            "No market-data session (an active connection of a shared Kite app); waiting",
            token=lambda session: session,
            backoff_seconds=self.session_check_seconds,
            most_seconds=MAX_REFUSED_BACKOFF_SECONDS,
        )
        while not stop.is_set():
            session = self._session()
            if not gate.open_for(session):
                stop.wait(self.session_check_seconds)
                continue
            self.stream = MarketStream(session, root=self.root)
            self.stream.start()
            try:
                self._follow(self.stream, stop)
            finally:
                self.stream.stop()
            if self.stream.refused.is_set():
                gate.refused(session)
            else:
                gate.accepted()

    def _follow(self, stream: MarketStream, stop: threading.Event) -> None:
        """Sync the stream until asked to stop, its session is refused, or the connection's token changes."""
        next_session_check = time.monotonic() + self.session_check_seconds
        while not stop.wait(self.sync_seconds):
            if stream.refused.is_set():
                return
            try:
                stream.sync()
            except Exception:
                logger.exception("Market stream could not sync its subscriptions")
            if time.monotonic() >= next_session_check:
                next_session_check = time.monotonic() + self.session_check_seconds
                if self._session() != stream.session:
                    logger.info("Market-data session changed; reconnecting the stream")
                    return

    def _session(self) -> StreamSession | None:
        return session_read(market_data_session, self.tenant_slug, logger=logger, stream="Market stream")


_embedded_started = threading.Event()


def start_embedded_market_stream() -> bool:
    """The streams (Kite's, and Schwab's for US symbols) on daemon threads of this process, once, as
    `run_market_stream` runs them in its own; a no-op outside the embedded mode."""
    if not settings.THOR_EMBEDDED_MARKET_STREAM or _embedded_started.is_set():
        return False
    _embedded_started.set()
    from market.schwab_runner import SchwabStreamRunner  # it imports this module

    for name, runner in (("market-stream", MarketStreamRunner()), ("schwab-stream", SchwabStreamRunner())):

        def run(runner=runner, name=name) -> None:
            try:
                runner.run(threading.Event())  # until the process ends
            except Exception:
                logger.exception("The embedded %s stopped", name)

        threading.Thread(target=run, name=name, daemon=True).start()
    return True
