"""Schwab's streamer, the WebSocket its clients open at `streamerInfo.streamerSocketUrl`, over the shared market.

The upgrade asks for nothing; the session is the first request: `{"requests": [{"service": "ADMIN",
"command": "LOGIN", "requestid", "SchwabClientCustomerId", "SchwabClientCorrelId", "parameters":
{"Authorization": <access token>, "SchwabClientChannel", "SchwabClientFunctionId"}}]}`. Every request is
answered with a `response` frame whose `content.code` is Schwab's (0 success, 3 login denied, 11 service
not available, 12 connection closed, 19 symbol limit, 21 bad command format); a denied login is answered
and the connection closed. Schwab streams one connection per login: a second LOGIN closes the first with
code 12. Services: LEVELONE_EQUITIES with SUBS (replaces the keys and fields), ADD, UNSUBS and VIEW
(replaces the fields); a symbol the market does not trade is accepted and never streams, as at Schwab.

Every `tick_seconds` a `data` frame carries, for each subscribed symbol, the numbered fields that changed
since the connection last heard it (all of them the first time), from the quote `/marketdata/v1/quotes`
gives at that moment, so a stream and a quote never disagree; a `notify` heartbeat goes out when nothing
else did for HEARTBEAT_PERIODS periods. The stream outlives the access token it logged in with.
"""

import contextlib
import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .schwab_models import SchwabError
from .schwab_state import SchwabState
from .stream_hub import StreamHub
from .web import Request, Response, Router
from .websocket import WebSocket, WebSocketClosed

logger = logging.getLogger("thor.sandbox.schwab_streamer")

STREAMER_PATH = "/schwab-streamer/ws"
MAX_MESSAGE_BYTES = 64 * 1024
# The sandbox's own limit (Schwab documents a code for it, not the number).
MAX_SYMBOLS_PER_CONNECTION = 500
HEARTBEAT_PERIODS = 10
LEVELONE_EQUITIES = "LEVELONE_EQUITIES"

SUCCESS, LOGIN_DENIED, SERVICE_NOT_AVAILABLE, CLOSE_CONNECTION = 0, 3, 11, 12
REACHED_SYMBOL_LIMIT, BAD_COMMAND_FORMAT = 19, 21

# LEVELONE_EQUITIES field number -> the quote's field it is read from (None: a constant below).
QUOTE_FIELDS = {
    1: "bidPrice",
    2: "askPrice",
    3: "lastPrice",
    8: "totalVolume",
    10: "highPrice",
    11: "lowPrice",
    12: "closePrice",
    17: "openPrice",
    18: "netChange",
    33: "mark",
    34: "quoteTime",
    35: "tradeTime",
}
SIZES = {4: 100, 5: 100, 9: 100}  # bid, ask and last size: one round lot


class Refusal(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class StreamerConnection:
    socket: WebSocket
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    username: str = ""
    customer_id: str = ""
    correl_id: str = ""
    # symbol -> the fields last sent for it ({} until its first frame).
    symbols: dict[str, dict[str, object]] = field(default_factory=dict)
    fields: tuple[int, ...] = ()
    wake: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class SchwabStreamerHub(StreamHub[StreamerConnection]):
    """Every open streamer connection: reads their requests, sends their data."""

    def __init__(self, schwab: SchwabState, *, clock: Callable[[], float], tick_seconds: float = 1.0):
        super().__init__()
        self._schwab = schwab
        self._clock = clock
        self.tick_seconds = tick_seconds
        self.logins_denied = 0

    def run(self, socket: WebSocket) -> None:
        """Serve one upgraded connection until it closes (in the request handler's thread)."""
        self.serve(StreamerConnection(socket), self._send_data, name="sandbox-streamer")

    # --- control ------------------------------------------------------------------------------

    def listing(self) -> list[dict]:
        listed = []
        for connection in self.open_connections():
            with connection.lock:
                symbols, fields = sorted(connection.symbols), list(connection.fields)
            listed.append({"id": connection.id, "username": connection.username, "symbols": symbols, "fields": fields})
        return listed

    def send_raw(self, text: str) -> int:
        """Send `text` as it is to every connection (a test's hostile frame)."""
        connections = self.open_connections()
        for connection in connections:
            _send(connection, text)
        return len(connections)

    # --- requests -----------------------------------------------------------------------------

    def _handle(self, connection: StreamerConnection, payload: bytes) -> None:
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            message = None
        requests = message.get("requests") if isinstance(message, dict) else None
        if not isinstance(requests, list) or not requests:
            self._respond(connection, {}, BAD_COMMAND_FORMAT, 'Send {"requests": [...]}.')
            return
        for request in requests:
            request = request if isinstance(request, dict) else {}
            try:
                message_text = self._apply(connection, request)
            except Refusal as refusal:
                self._respond(connection, request, refusal.code, str(refusal))
                if refusal.code == LOGIN_DENIED and not connection.username:
                    connection.socket.close(1000, "Login denied.")
                    return
                continue
            self._respond(connection, request, SUCCESS, message_text)
            if request.get("command") == "LOGOUT":
                connection.socket.close(1000, "Logged out.")
                return
        connection.wake.set()

    def _apply(self, connection: StreamerConnection, request: dict) -> str:
        """Apply one request; the success message, or a Refusal."""
        service, command = request.get("service"), request.get("command")
        parameters = request.get("parameters")
        parameters = parameters if isinstance(parameters, dict) else {}
        if service == "ADMIN" and command == "LOGIN":
            return self._login(connection, request, parameters)
        if not connection.username:
            raise Refusal(LOGIN_DENIED, "Log in first.")
        if request.get("SchwabClientCustomerId") != connection.customer_id:
            raise Refusal(BAD_COMMAND_FORMAT, "SchwabClientCustomerId does not match the login.")
        if service == "ADMIN" and command == "LOGOUT":
            return "Logged out."
        if service != LEVELONE_EQUITIES:
            raise Refusal(SERVICE_NOT_AVAILABLE, f"Service {service} is not available.")
        if command not in ("SUBS", "ADD", "UNSUBS", "VIEW"):
            raise Refusal(BAD_COMMAND_FORMAT, f"Unknown command {command}.")
        keys = _keys(parameters.get("keys")) if command != "VIEW" else []
        fields = _fields(parameters.get("fields")) if command != "UNSUBS" else ()
        if keys is None or fields is None or (command == "VIEW" and not fields):
            raise Refusal(BAD_COMMAND_FORMAT, "keys and fields must be comma-separated lists.")
        with connection.lock:
            current = dict(connection.symbols)
            if command == "SUBS":
                current = {symbol: current.get(symbol, {}) for symbol in keys}
            elif command == "ADD":
                current.update({symbol: {} for symbol in keys if symbol not in current})
            elif command == "UNSUBS":
                current = {symbol: sent for symbol, sent in current.items() if symbol not in keys}
            if len(current) > MAX_SYMBOLS_PER_CONNECTION:
                raise Refusal(REACHED_SYMBOL_LIMIT, f"At most {MAX_SYMBOLS_PER_CONNECTION} symbols.")
            if fields and tuple(fields) != connection.fields:
                current = {symbol: {} for symbol in current}  # other fields: everything is new again
                connection.fields = tuple(fields)
            connection.symbols = current
        return f"{command} command succeeded"

    def _login(self, connection: StreamerConnection, request: dict, parameters: dict) -> str:
        token = parameters.get("Authorization")
        if connection.username:
            raise Refusal(BAD_COMMAND_FORMAT, "Already logged in.")
        try:
            if not isinstance(token, str) or not token:
                raise SchwabError(401, {})
            user = self._schwab.streamer_user(token)
        except SchwabError:
            self._denied()
            raise Refusal(LOGIN_DENIED, "Login denied: the access token is invalid or has expired.") from None
        if request.get("SchwabClientCustomerId") != user.customer_id or not all(
            isinstance(parameters.get(name), str) and parameters[name]
            for name in ("SchwabClientChannel", "SchwabClientFunctionId")
        ):
            self._denied()
            raise Refusal(LOGIN_DENIED, "Login denied: the streamer ids do not match the login.")
        with self._lock:
            replaced = [other for other in self._connections if other.username == user.username]
            for other in replaced:
                self._connections.discard(other)
            connection.username, connection.customer_id = user.username, user.customer_id
            connection.correl_id = str(request.get("SchwabClientCorrelId") or "")
        for other in replaced:
            self._notify(other, CLOSE_CONNECTION, "Another login opened a streamer connection.")
            other.socket.close(1000, "Replaced by another login.")
            other.wake.set()
        return "server=sandbox;status=PN"

    def _denied(self) -> None:
        with self._lock:
            self.logins_denied += 1

    def _respond(self, connection: StreamerConnection, request: dict, code: int, message: str) -> None:
        frame = {
            "response": [
                {
                    "service": str(request.get("service") or "ADMIN"),
                    "command": str(request.get("command") or ""),
                    "requestid": str(request.get("requestid", "")),
                    "SchwabClientCorrelId": str(request.get("SchwabClientCorrelId") or ""),
                    "timestamp": self._stamp(),
                    "content": {"code": code, "msg": message},
                }
            ]
        }
        _send(connection, json.dumps(frame))

    def _notify(self, connection: StreamerConnection, code: int, message: str) -> None:
        content = {"code": code, "msg": message}
        _send(
            connection, json.dumps({"notify": [{"service": "ADMIN", "timestamp": self._stamp(), "content": content}]})
        )

    def _stamp(self) -> int:
        return int(self._clock() * 1000)

    # --- data ---------------------------------------------------------------------------------

    def _send_data(self, connection: StreamerConnection) -> None:
        quiet = 0
        while not (connection.socket.closing or connection.socket.closed):
            try:
                frame = self._frame(connection) if connection.username else None
                if frame is None:
                    quiet += 1
                    if quiet >= HEARTBEAT_PERIODS and connection.username:
                        frame = {"notify": [{"heartbeat": str(self._stamp())}]}
                if frame is not None:
                    quiet = 0
                    connection.socket.send_text(json.dumps(frame))
            except (WebSocketClosed, OSError):
                return
            except Exception:
                logger.exception("Sandbox streamer failed to build data")
            connection.wake.wait(self.tick_seconds)
            connection.wake.clear()

    def _frame(self, connection: StreamerConnection) -> dict | None:
        """The data frame of what changed since the connection last heard it, or None when nothing did."""
        with connection.lock:
            symbols, fields = list(connection.symbols), connection.fields
        traded = [symbol for symbol in symbols if self._schwab.quote_feed.find(symbol) is not None]
        if not traded or not fields:
            return None
        quotes = self._schwab.quote_feed.quotes(traded)
        content = []
        with connection.lock:
            for symbol in traded:
                sent = connection.symbols.get(symbol)
                if sent is None:
                    continue  # unsubscribed meanwhile
                values = _field_values(quotes[symbol], fields, self._schwab.quote_feed.description(symbol))
                changed = {name: value for name, value in values.items() if sent.get(name) != value}
                if not changed:
                    continue
                entry: dict[str, object] = {"key": symbol, "delayed": False}
                if not sent:
                    entry.update(assetMainType="EQUITY", assetSubType="COE", cusip=quotes[symbol]["reference"]["cusip"])
                sent.update(changed)
                content.append({**entry, **changed})
        if not content:
            return None
        stamp = self._stamp()
        return {"data": [{"service": LEVELONE_EQUITIES, "timestamp": stamp, "command": "SUBS", "content": content}]}


def _send(connection: StreamerConnection, text: str) -> None:
    with contextlib.suppress(WebSocketClosed, OSError):
        connection.socket.send_text(text)


def _field_values(quote: dict, fields: tuple[int, ...], description: dict) -> dict[str, object]:
    values: dict[str, object] = {}
    for number in fields:
        if number in QUOTE_FIELDS:
            values[str(number)] = quote["quote"][QUOTE_FIELDS[number]]
        elif number in SIZES:
            values[str(number)] = SIZES[number]
        elif number == 15:
            values["15"] = description.get("description", quote["symbol"])
        elif number == 25:
            values["25"] = quote["reference"]["exchangeName"]
    return values


def _keys(value) -> list[str] | None:
    if not isinstance(value, str):
        return None
    return list(dict.fromkeys(key.strip().upper() for key in value.split(",") if key.strip()))


def _fields(value) -> tuple[int, ...] | None:
    """The requested field numbers (symbol, 0, always implied); () when not given; None when malformed."""
    if value is None:
        return ()
    if not isinstance(value, str):
        return None
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not all(part.isdigit() and int(part) < 100 for part in parts):
        return None
    return tuple(sorted({int(part) for part in parts}))


def add_control_routes(router: Router, hub: SchwabStreamerHub) -> None:
    """`/_sandbox/schwab/streamer`: the open connections (and what each subscribes), how many logins were
    denied; a network failure on demand (`/drop`); a raw text frame to every connection (`/send`)."""

    def send(request: Request) -> Response:
        try:
            payload = request.json()
        except ValueError:
            raise ValueError("The body must be JSON.") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise ValueError('Send {"text": "..."}.')
        return Response.json({"sent": hub.send_raw(payload["text"])})

    router.add(
        "GET",
        "/_sandbox/schwab/streamer",
        lambda _: Response.json({"connections": hub.listing(), "logins_denied": hub.logins_denied}),
    )
    router.add("POST", "/_sandbox/schwab/streamer/drop", lambda _: Response.json({"dropped": hub.drop_all()}))
    router.add("POST", "/_sandbox/schwab/streamer/send", send)
