"""The market stream's US half: Schwab's streamer (LEVELONE_EQUITIES), into Redis and the tick hub.

It runs beside the Kite stream (`manage.py run_market_stream`) on a tenant's Schwab market-data session:
the active connection of a tenant's shared Schwab app, chosen as the Kite stream chooses its own. It keeps
subscribed the US symbols in the watched set (`market.services.ticks_watch`; a US symbol's token is the
symbol itself, `market.us_tokens`) and writes each last price to the same last-prices hash and publishes each data
frame's prices as one batch to the same fan-out point (market.tickhub) as the Kite stream.

Schwab's protocol: the streamer's address and ids come from `GET /trader/v1/userPreference`
(`streamerInfo`); the client connects, sends ADMIN LOGIN with the access token, then LEVELONE_EQUITIES
SUBS, ADD and UNSUBS with symbols and field numbers; the server answers every request with a `response`
(content.code 0 is success) and pushes `data` frames, each entry a symbol's fields that changed, and
`notify` heartbeats. Schwab keeps one streamer connection per login: another login closes this one with
code 12.

After a drop the runner connects again (backoff doubling from `reconnect_seconds` to a minute), logs in with
the connection's current token and subscribes the whole watched set again. A denied login (code 3) reads
the connection again: a new token is tried at once; the same one is refreshed once (the stream outlives
the token it logged in with, so a refresh by the beat does not interrupt it, but a reconnect needs a live
token), then tried again only after a backoff that doubles up to 5 minutes. A frame that is not JSON, or
not Schwab's shape, is skipped (logged at most once a minute).
"""

import itertools
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal

from websockets.sync.client import ClientConnection

from market import caches
from market.tickhub import ticks_deliver
from market.us_tokens import is_us_token, us_symbol, us_token
from thor.coordination import OccasionalWarning
from thor.money import is_market_price

logger = logging.getLogger("market.schwab_stream")

SERVICE = "LEVELONE_EQUITIES"
# Symbol and last price, all the stream keeps: Schwab sends a symbol only when a field asked for changes.
FIELDS = "0,3"
LAST_PRICE = "3"
# Symbols on one connection: the sandbox's limit (Schwab answers code 19 past its own, undocumented one).
MAX_SYMBOLS = 500
SUCCESS, LOGIN_DENIED, CLOSE_CONNECTION, STOP_STREAMING = 0, 3, 12, 30
SYNC_SECONDS = 1.0
SESSION_CHECK_SECONDS = 5.0
LOGIN_TIMEOUT_SECONDS = 10.0
# Heartbeats come between data frames: this long without any frame is a dead connection.
IDLE_SECONDS = 60.0
RECONNECT_SECONDS = 1.0
MAX_RECONNECT_SECONDS = 60.0
MAX_REFUSED_BACKOFF_SECONDS = 300.0
MAX_FRAME_BYTES = 4 * 1024 * 1024

_odd_frame = OccasionalWarning(logger)


class StreamRefused(Exception):
    """Schwab refused the session (a denied login, or another login took the connection)."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(f"code {code}: {message}"[:300])
        self.code = code


class StreamLost(Exception):
    """The connection stopped answering, or Schwab stopped streaming to it."""


def wanted_symbols() -> set[str]:
    """The US symbols of the watched set, at most MAX_SYMBOLS of them."""
    symbols = {symbol for token in caches.watched_tokens() if is_us_token(token) and (symbol := us_symbol(token))}
    if len(symbols) > MAX_SYMBOLS:
        logger.warning("%d US symbols watched; the Schwab stream subscribes %d", len(symbols), MAX_SYMBOLS)
        symbols = set(sorted(symbols)[:MAX_SYMBOLS])
    return symbols


def prices_deliver(prices: dict[int, str]) -> None:
    """Into the last-prices hash and, as one batch, to every server process (market.tickhub), as the Kite
    stream delivers its ticks."""
    ticks_deliver(prices, received_at=time.time())


class SchwabStream:
    """One logged-in streamer connection (on `socket`, opened by the runner), kept subscribed."""

    def __init__(
        self,
        socket: ClientConnection,
        info: dict[str, str],
        *,
        deliver: Callable[[dict[int, str]], None] = prices_deliver,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.socket = socket
        self.info = info
        self.deliver = deliver
        self.clock = clock
        self.subscribed: set[str] = set()
        self.logged_in = False
        self.last_heard = clock()
        self._ids = itertools.count()
        self._pending: dict[str, tuple[str, set[str]]] = {}

    def login(self, access_token: str, *, timeout: float = LOGIN_TIMEOUT_SECONDS) -> None:
        """ADMIN LOGIN, answered within `timeout`; StreamRefused when Schwab denies it."""
        parameters = {
            "Authorization": access_token,
            "SchwabClientChannel": self.info["schwabClientChannel"],
            "SchwabClientFunctionId": self.info["schwabClientFunctionId"],
        }
        self._send("ADMIN", "LOGIN", parameters)
        deadline = self.clock() + timeout
        while not self.logged_in and (remaining := deadline - self.clock()) > 0:
            try:
                self.handle(self.socket.recv(timeout=remaining))
            except TimeoutError:
                break
        if not self.logged_in:
            raise StreamLost("Schwab did not answer the login.")

    def sync(self, wanted: set[str]) -> None:
        """Subscribe what was added to `wanted`, unsubscribe what left it."""
        added, removed = wanted - self.subscribed, self.subscribed - wanted
        if removed:
            self._send(SERVICE, "UNSUBS", {"keys": ",".join(sorted(removed))}, removed)
        if added:
            # SUBS replaces the connection's subscription; ADD extends it (SUBS starts it).
            command = "ADD" if self.subscribed - removed else "SUBS"
            self._send(SERVICE, command, {"keys": ",".join(sorted(added)), "fields": FIELDS}, added)
        self.subscribed = set(wanted)

    def pump(self, seconds: float) -> None:
        """Handle what arrives for `seconds`; StreamLost when nothing has for IDLE_SECONDS."""
        deadline = self.clock() + seconds
        while (remaining := deadline - self.clock()) > 0:
            try:
                raw = self.socket.recv(timeout=remaining)
            except TimeoutError:
                break
            self.handle(raw)
        if self.clock() - self.last_heard > IDLE_SECONDS:
            raise StreamLost(f"Nothing from Schwab for {IDLE_SECONDS:.0f} s.")

    def handle(self, raw: str | bytes) -> None:
        """One frame from the server: responses checked, data delivered, anything else skipped."""
        self.last_heard = self.clock()
        message = _parsed(raw)
        if message is None:
            return
        for answer in _items(message, "response"):
            self._on_response(answer)
        prices: dict[int, str] = {}
        for item in _items(message, "data"):
            if item.get("service") == SERVICE:
                prices.update(self._prices(item.get("content")))
        if prices:
            self.deliver(prices)
        for note in _items(message, "notify"):
            code, text = _code(note) if "content" in note else (SUCCESS, "")
            if code == CLOSE_CONNECTION:
                raise StreamRefused(code, text)
            if code == STOP_STREAMING:
                raise StreamLost(f"Schwab stopped streaming: {text}"[:300])

    # --- inside -------------------------------------------------------------------------------

    def _send(self, service: str, command: str, parameters: dict, symbols: set[str] | None = None) -> str:
        request_id = str(next(self._ids))
        request = {
            "service": service,
            "command": command,
            "requestid": request_id,
            "SchwabClientCustomerId": self.info["schwabClientCustomerId"],
            "SchwabClientCorrelId": self.info["schwabClientCorrelId"],
            "parameters": parameters,
        }
        if symbols is not None:
            self._pending[request_id] = (command, set(symbols))
        self.socket.send(json.dumps({"requests": [request]}))
        return request_id

    def _on_response(self, answer: dict) -> None:
        code, text = _code(answer)
        pending = self._pending.pop(str(answer.get("requestid")), None)
        if answer.get("service") == "ADMIN":
            if (answer.get("command") == "LOGIN" and code != SUCCESS) or code in (LOGIN_DENIED, CLOSE_CONNECTION):
                raise StreamRefused(code, text)
            self.logged_in = self.logged_in or answer.get("command") == "LOGIN"
            return
        if code == SUCCESS or pending is None:
            return
        command, symbols = pending
        logger.warning("Schwab refused %s of %d symbols (code %s): %s", command, len(symbols), code, text[:200])
        if command in ("SUBS", "ADD"):
            self.subscribed -= symbols  # the next sync asks again

    def _prices(self, content) -> dict[int, str]:
        prices: dict[int, str] = {}
        if not isinstance(content, list):
            return prices
        for entry in content:
            if not isinstance(entry, dict):
                continue
            symbol, value = entry.get("key"), entry.get(LAST_PRICE)
            if not isinstance(symbol, str) or symbol not in self.subscribed or not _is_price(value):
                continue
            token = us_token(symbol)
            if token is not None:
                prices[token] = str(Decimal(str(value)))
        return prices


def _parsed(raw: str | bytes) -> dict | None:
    try:
        message = json.loads(raw)
    except (ValueError, TypeError):
        message = None
    if not isinstance(message, dict):
        _odd_frame("Schwab stream skipped a frame that is not a JSON object (%d bytes)", len(raw))
        return None
    return message


def _items(message: dict, name: str) -> list[dict]:
    items = message.get(name)
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _code(item: dict) -> tuple[int, str]:
    content = item.get("content")
    content = content if isinstance(content, dict) else {}
    code = content.get("code")
    return (code if isinstance(code, int) and not isinstance(code, bool) else -1), str(content.get("msg") or "")


def _is_price(value) -> bool:
    # A JSON number (never a string or a boolean: Schwab sends numbers) that is a market price.
    return isinstance(value, int | float) and not isinstance(value, bool) and is_market_price(value)
