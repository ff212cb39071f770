"""Kite's streaming quotes, the WebSocket `KiteTicker` connects to, over the sandbox's moving market.

`ws://<sandbox>/ws?api_key=...&access_token=...` as Kite serves it at wss://ws.kite.trade: a session of the
sandbox's Kite (bad credentials are refused at the upgrade with 403, as Kite does), then JSON text
messages from the client (`{"a": "subscribe"|"unsubscribe", "v": [tokens]}`, `{"a": "mode", "v": [mode,
[tokens]]}`) and binary messages from the server: every `tick_seconds` one message with a packet per
subscribed token (ltp 8 bytes, quote 44, full 184 with five levels of depth a side; an index 8, 28 or 32),
or a 1-byte heartbeat when nothing is subscribed. The prices are the REST quote's of the same moment
(kite_quotes.kite_quote), so a tick and `/quote` never disagree. As an exchange's feed does, every connection
ticks at the same instants (multiples of `tick_seconds` on the monotonic clock) and hears the same tick: an
instrument's packet is built once an instant, whoever sends it first, and built again when a price is pinned. Errors go back as Kite's text message
`{"type": "error", "data": "..."}`, which KiteTicker hands to `on_error` with code 0. When each packet left
can be logged for a benchmark (ticker_log, `/_sandbox/ticker/sent`).
"""

import json
import logging
import secrets
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message

from .kite_models import KiteError
from .kite_quotes import kite_quote
from .kite_state import KiteState
from .market import KITE_EXCHANGES, Instrument, Market
from .stream_hub import StreamHub
from .ticker_log import SentTicks
from .web import Response
from .websocket import WebSocket, WebSocketClosed, accept_key

logger = logging.getLogger("thor.sandbox.ticker")

TICKER_PATH = "/ws"
MODE_LTP, MODE_QUOTE, MODE_FULL = "ltp", "quote", "full"
MODES = (MODE_LTP, MODE_QUOTE, MODE_FULL)
# Kite's limits: 3,000 instruments on a connection, 3 connections per API key.
MAX_TOKENS_PER_CONNECTION = 3000
MAX_CONNECTIONS_PER_API_KEY = 3
# A subscribe of 3,000 tokens is about 30 KB of JSON; anything far larger is refused unread.
MAX_MESSAGE_BYTES = 256 * 1024
HEARTBEAT = b"\x00"
# The close code when the connection's session ends under it (policy violation).
CLOSE_SESSION_ENDED = 1008
MAX_PACKED_TOKEN = 2**32 - 1

# The segment is the token's low byte; prices travel as integers of 1/divisor.
SEGMENT_CDS, SEGMENT_BCD, SEGMENT_INDICES, SEGMENT_NCO = 3, 6, 9, 12


def price_divisor(token: int) -> int:
    segment = token & 0xFF
    if segment == SEGMENT_CDS:
        return 10_000_000
    if segment in (SEGMENT_BCD, SEGMENT_NCO):
        return 10_000
    return 100


def _price(value: float, divisor: int) -> int:
    return min(max(round(value * divisor), 0), MAX_PACKED_TOKEN)


def tick_packet(market: Market, instrument: Instrument, mode: str, now: float) -> bytes:
    """One instrument's packet in `mode`, from the quote `/quote` would answer at this moment."""
    token = instrument.token
    divisor = price_divisor(token)
    quote = kite_quote(market, instrument, MODE_LTP if mode == MODE_LTP else MODE_QUOTE, "")
    last_price = _price(quote["last_price"], divisor)
    if mode == MODE_LTP:
        return struct.pack(">II", token, last_price)
    ohlc = {key: _price(value, divisor) for key, value in quote["ohlc"].items()}
    if token & 0xFF == SEGMENT_INDICES:
        change = last_price - ohlc["close"]
        packet = struct.pack(
            ">IIIIIIi", token, last_price, ohlc["high"], ohlc["low"], ohlc["open"], ohlc["close"], change
        )
        return packet + struct.pack(">I", int(now)) if mode == MODE_FULL else packet
    packet = struct.pack(
        ">IIIIIIIIIII",
        token,
        last_price,
        int(quote["last_quantity"]),
        _price(quote["average_price"], divisor),
        int(quote["volume"]),
        int(quote["buy_quantity"]),
        int(quote["sell_quantity"]),
        ohlc["open"],
        ohlc["high"],
        ohlc["low"],
        ohlc["close"],
    )
    if mode != MODE_FULL:
        return packet
    packet += struct.pack(
        ">IIIII", int(now), int(quote["oi"]), int(quote["oi_day_high"]), int(quote["oi_day_low"]), int(now)
    )
    for side in ("buy", "sell"):
        levels = list(quote["depth"][side])[:5]
        levels += [{"price": 0, "quantity": 0, "orders": 0}] * (5 - len(levels))
        for level in levels:
            packet += struct.pack(
                ">IIHxx", int(level["quantity"]), _price(level["price"], divisor), min(int(level["orders"]), 0xFFFF)
            )
    return packet


def tick_message(packets: list[bytes]) -> bytes:
    """Packets framed as Kite frames them: a count, then each packet after its length."""
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(packet)) + packet for packet in packets)


def error_message(text: str) -> str:
    return json.dumps({"type": "error", "data": text})


@dataclass
class Admission:
    api_key: str
    user_id: str
    access_token: str
    accept: str


@dataclass(eq=False)
class TickerConnection:
    socket: WebSocket
    api_key: str
    user_id: str
    access_token: str
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    modes: dict[int, str] = field(default_factory=dict)
    wake: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[int, str]:
        with self.lock:
            return dict(self.modes)


class KiteTickerHub(StreamHub[TickerConnection]):
    """Every open ticker connection: admits them, reads their messages, sends their ticks."""

    def __init__(self, kite: KiteState, market: Market, *, clock: Callable[[], float], tick_seconds: float = 1.0):
        super().__init__()
        self._kite = kite
        self._market = market
        self._clock = clock
        self.tick_seconds = tick_seconds
        # This instant's packets by (token, mode), shared by the connections that tick at it (`_packets`).
        self._instant: tuple[int, int, int] | None = None
        self._built: dict[tuple[int, str], bytes] = {}
        self._built_lock = threading.Lock()
        # When each tick left, for a benchmark (ticker_log: off unless a control call turns it on).
        self.sent: SentTicks | None = None
        # Upgrades admitted whose connection is not open yet, by API key: the 101 goes out before the connection
        # joins the open ones, and a client that heard it may connect again in between.
        self._admitted: Counter[str] = Counter()

    # --- the upgrade --------------------------------------------------------------------------

    def admit(self, headers: Message, query: Mapping[str, list[str]]) -> Admission | Response:
        """The connection's Kite session, or the refusal to answer the upgrade with."""
        key = headers.get("Sec-WebSocket-Key", "")
        if not key or headers.get("Sec-WebSocket-Version", "") != "13":
            return _refusal(400, "InputException", "Send a WebSocket version 13 upgrade.")
        api_key = (query.get("api_key") or [""])[0]
        access_token = (query.get("access_token") or [""])[0]
        try:
            session = self._kite.authenticate(f"token {api_key}:{access_token}")
        except KiteError as error:
            return _refusal(error.status, error.error_type, error.message)
        with self._lock:
            open_for_key = sum(1 for connection in self._connections if connection.api_key == api_key)
            if open_for_key + self._admitted[api_key] >= MAX_CONNECTIONS_PER_API_KEY:
                return _refusal(429, "NetworkException", "Maximum number of connections per API key reached.")
            self._admitted[api_key] += 1
        return Admission(api_key, session.user_id, access_token, accept_key(key))

    def run(self, upgrade: Callable[[], WebSocket], admission: Admission) -> None:
        """Switch protocols (`upgrade`) and serve the connection until it closes (in the request handler's
        thread). The place `admit` kept for it passes to the open connection, or is given back if the upgrade
        fails: either way counted once."""
        kept = True

        def registered() -> None:  # under the hub's lock
            nonlocal kept
            self._admitted[admission.api_key] -= 1
            kept = False

        try:
            socket = upgrade()
            connection = TickerConnection(socket, admission.api_key, admission.user_id, admission.access_token)
            self.serve(connection, self._send_ticks, name="sandbox-ticks", registered=registered)
        finally:
            if kept:
                with self._lock:
                    self._admitted[admission.api_key] -= 1

    # --- control ------------------------------------------------------------------------------

    def listing(self) -> list[dict]:
        return [
            {
                "id": connection.id,
                "api_key": connection.api_key,
                "user_id": connection.user_id,
                "modes": {str(token): mode for token, mode in sorted(connection.snapshot().items())},
            }
            for connection in self.open_connections()
        ]

    # --- messages -----------------------------------------------------------------------------

    def _handle(self, connection: TickerConnection, payload: bytes) -> None:
        error = self._apply(connection, payload)
        if error:
            connection.socket.send_text(error_message(error))
        connection.wake.set()

    def _apply(self, connection: TickerConnection, payload: bytes) -> str | None:
        """Apply one client message; the error to answer with, if any."""
        try:
            request = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return "Invalid message: not JSON."
        action = request.get("a") if isinstance(request, dict) else None
        value = request.get("v") if isinstance(request, dict) else None
        if action in ("subscribe", "unsubscribe"):
            tokens = _tokens(value)
            if tokens is None:
                return f"Invalid {action}: send a list of instrument tokens."
            if action == "subscribe":
                return self._subscribe(connection, tokens)
            with connection.lock:
                for token in tokens:
                    connection.modes.pop(token, None)
            return None
        if action == "mode":
            mode, tokens = (
                (value[0], _tokens(value[1])) if isinstance(value, list) and len(value) == 2 else (None, None)
            )
            if mode not in MODES or tokens is None:
                return 'Invalid mode: send ["ltp"|"quote"|"full", [tokens]].'
            with connection.lock:
                for token in tokens:
                    if token in connection.modes:
                        connection.modes[token] = mode
            return None
        return "Unknown action."

    def _subscribe(self, connection: TickerConnection, tokens: list[int]) -> str | None:
        # An unknown token counts towards the limit but never ticks, as at Kite.
        with connection.lock:
            new = [token for token in dict.fromkeys(tokens) if token not in connection.modes]
            if len(connection.modes) + len(new) > MAX_TOKENS_PER_CONNECTION:
                return f"Subscription limit exceeded: at most {MAX_TOKENS_PER_CONNECTION} instruments per connection."
            for token in new:
                connection.modes[token] = MODE_QUOTE
        return None

    # --- ticks --------------------------------------------------------------------------------

    def _send_ticks(self, connection: TickerConnection) -> None:
        while not (connection.socket.closing or connection.socket.closed):
            if not self._session_valid(connection):
                # The session ended (logout, the 06:00 reset): the stream ends with it, and a reconnect
                # with the same token is refused at the upgrade.
                connection.socket.close(CLOSE_SESSION_ENDED, "Token is invalid or has expired.")
                return
            modes = connection.snapshot()
            try:
                packets = self._packets(modes)
                message = tick_message(packets) if modes else HEARTBEAT
                sent_at = time.time()
                connection.socket.send_binary(message)
                if (sent := self.sent) is not None and packets:
                    sent.record(connection.id, connection.user_id, sent_at, [_token_price(p) for p in packets])
            except (WebSocketClosed, OSError):
                return
            except Exception:
                logger.exception("Sandbox ticker failed to build ticks")
            # The next instant, however long building this message took: the rate a client subscribes for, at the
            # moments every other connection ticks too (a subscription's first prices go at once, then the grid's).
            connection.wake.wait(self.tick_seconds - time.monotonic() % self.tick_seconds)
            connection.wake.clear()

    def _session_valid(self, connection: TickerConnection) -> bool:
        try:
            self._kite.authenticate(f"token {connection.api_key}:{connection.access_token}")
        except KiteError:
            return False
        return True

    def _packets(self, modes: dict[int, str]) -> list[bytes]:
        now = self._clock()
        built = self._built_at(now)
        packets = []
        for token, mode in modes.items():
            packet = built.get((token, mode))
            if packet is None:
                instrument = self._market.find(str(token)) if token <= MAX_PACKED_TOKEN else None
                # Kite streams its own exchanges only (the market also prices Schwab's US equities).
                if instrument is None or instrument.exchange not in KITE_EXCHANGES:
                    continue
                packet = built[(token, mode)] = tick_packet(self._market, instrument, mode, now)
            packets.append(packet)
        return packets

    def _built_at(self, now: float) -> dict[tuple[int, str], bytes]:
        """The packets built at this instant so far: the nearest multiple of tick_seconds on the monotonic clock (a
        sender woken a hair early or late is at the same one), and on the market's clock (a test's clock that jumps
        is another instant), with no price pinned since."""
        instant = (
            round(time.monotonic() / self.tick_seconds),
            round(now / self.tick_seconds),
            self._market.version,
        )
        with self._built_lock:
            if instant != self._instant:
                self._instant, self._built = instant, {}
            return self._built


def _token_price(packet: bytes) -> tuple[int, float]:
    """A packet's token and last price as the client decodes them (every mode starts with both)."""
    token, price = struct.unpack_from(">II", packet)
    return token, price / price_divisor(token)


def _tokens(value) -> list[int] | None:
    if not isinstance(value, list):
        return None
    if not all(isinstance(token, int) and not isinstance(token, bool) and token >= 0 for token in value):
        return None
    return value


def _refusal(status: int, error_type: str, message: str) -> Response:
    return Response.json({"status": "error", "message": message, "error_type": error_type, "data": None}, status)
