"""The sandbox HTTP server: one port for every fake broker plus the `/_sandbox` control API.

Brokers are mounted by path prefix (Kite at the root; Schwab under `/v1/oauth`, `/trader/v1` and
`/marketdata/v1`). The control API registers apps, pins prices, injects faults and reads call counts;
it is never subject to faults and is not counted.
"""

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from .control import control_error, control_router, dispatch_control, is_control_path
from .idp import DiscordIdp, GoogleIdp
from .kite_api import KiteApi
from .kite_models import KiteApp
from .kite_state import KiteState
from .kite_ticker import MAX_MESSAGE_BYTES, TICKER_PATH, Admission, KiteTickerHub
from .market import InstrumentCatalogue, Market
from .schwab_api import SchwabApi
from .schwab_models import SchwabApp, us_instruments
from .schwab_state import SchwabState
from .schwab_streamer import MAX_MESSAGE_BYTES as STREAMER_MAX_MESSAGE_BYTES
from .schwab_streamer import STREAMER_PATH, SchwabStreamerHub
from .schwab_streamer import add_control_routes as add_streamer_control_routes
from .state import CallStats, Fault, FaultBook, PostbackSender
from .web import Request, Response
from .websocket import WebSocket, accept_key, is_upgrade

logger = logging.getLogger("thor.sandbox")

MAX_BODY_BYTES = 1024 * 1024


class BrokerApi(Protocol):
    name: str
    prefix: str

    def handle(self, request: Request) -> Response: ...

    def error_response(self, status: int, message: str) -> Response: ...


class SandboxState:
    """Everything the sandbox knows, behind one lock shared by all its parts."""

    def __init__(
        self,
        *,
        apps: Iterable[KiteApp | Mapping] = (),
        faults: Iterable[Fault | Mapping] = (),
        clock: Callable[[], float] = time.time,
        schwab_apps: Iterable[SchwabApp | Mapping] = (),
        full_universe: bool = False,
    ):
        self.lock = threading.RLock()
        self.stats = CallStats(self.lock)
        self.faults = FaultBook(self.lock, faults)
        self.catalogue = InstrumentCatalogue(full_universe=full_universe)
        self.market = Market(self.catalogue.instruments() + us_instruments(), clock=clock, lock=self.lock)
        self.postbacks = PostbackSender(self.stats)
        self.kite = KiteState(lock=self.lock, clock=clock, market=self.market, postbacks=self.postbacks, apps=apps)
        self.schwab = SchwabState(lock=self.lock, clock=clock, market=self.market, apps=schwab_apps)
        self._initial_faults = self.faults.listing()

    def reset(self) -> None:
        """Back to the state it started in, for a long-running sandbox shared by independent tests:
        its first apps, fresh accounts, no sessions, pins, pinned-in instruments or counts, and the faults it
        started with."""
        with self.lock:
            self.kite.reset()
            self.schwab.reset()
            self.market.reset()
            self.faults.clear()
            for fault in self._initial_faults:
                self.faults.add(Fault(**fault))
            self.stats.reset()


class SandboxServer:
    """Serve with `serve_forever()` (blocking) and stop with `shutdown()` from another thread."""

    def __init__(
        self,
        *,
        apps: Iterable[KiteApp | Mapping] = (),
        faults: Iterable[Fault | Mapping] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        tick_seconds: float | None = 1.0,
        clock: Callable[[], float] = time.time,
        idp_clients: Mapping[str, Iterable[Mapping]] | None = None,
        schwab_apps: Iterable[SchwabApp | Mapping] = (),
        sleep: Callable[[float], None] = time.sleep,
        full_universe: bool = False,
        ticker_seconds: float = 1.0,
    ):
        self.state = SandboxState(
            apps=apps, faults=faults, clock=clock, schwab_apps=schwab_apps, full_universe=full_universe
        )
        # The identity providers Thor's social login talks to, each under its own prefix.
        idp_clients = idp_clients or {}
        self.google = GoogleIdp(base_url=lambda: self.url, clients=idp_clients.get("google", ()), clock=clock)
        self.discord = DiscordIdp(clients=idp_clients.get("discord", ()), clock=clock)
        # Longest prefix first, so a broker under /trader/v1 wins over Kite at the root.
        self.schwab = SchwabApi(self.state.schwab, base_url=lambda: self.url)
        self.brokers: list[BrokerApi] = sorted(
            [
                KiteApi(self.state.kite, self.state.catalogue, self.state.faults),
                self.google,
                self.discord,
                *self.schwab.mounts(),
            ],
            key=lambda api: -len(api.prefix),
        )
        # Kite's streaming quotes at /ws, on this port: the request handler hands the upgraded socket over.
        self.ticker = KiteTickerHub(self.state.kite, self.state.market, clock=clock, tick_seconds=ticker_seconds)
        # Schwab's streamer (the address its userPreference gives), on this port too, at the same pace.
        self.streamer = SchwabStreamerHub(self.state.schwab, clock=clock, tick_seconds=ticker_seconds)
        self.control = control_router(self.state, self.ticker)
        add_streamer_control_routes(self.control, self.streamer)
        self._tick_seconds = tick_seconds
        # How a latency fault holds its answer back (a test passes a recorder, so nothing waits).
        self._sleep = sleep
        self._stopping = threading.Event()
        # Calls being answered: a reset waits for them, so a late answer (held back by a latency fault, its
        # caller long gone) lands in the state it was made for, not in the fresh one.
        self._answering = 0
        self._answered = threading.Condition()
        self._httpd = _HTTPServer((host, port), _RequestHandler)
        self._httpd.sandbox = self

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's address is (host, port), never bytes
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        if self._tick_seconds:
            threading.Thread(target=self._tick_forever, name="sandbox-ticker", daemon=True).start()
        self._httpd.serve_forever(poll_interval=0.05)

    def reset(self, *, settle_seconds: float = 10.0) -> None:
        """Back to the state it started in (see SandboxState.reset), its identity providers included:
        their first clients only, no codes, tokens or spoiled ID tokens. Calls still being answered finish
        first (for at most `settle_seconds`)."""
        with self._answered:
            self._answered.wait_for(lambda: self._answering == 0, timeout=settle_seconds)
        self.state.reset()
        self.google.reset()
        self.discord.reset()

    def shutdown(self) -> None:
        self._stopping.set()
        self.ticker.close_all()
        self.streamer.close_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self.state.postbacks.close()

    def _tick_forever(self) -> None:
        """Fill resting orders as prices move even when nobody is calling (so postbacks still flow)."""
        while not self._stopping.wait(self._tick_seconds):
            try:
                self.state.kite.match_resting_orders()
                self.state.schwab.match_resting_orders()
            except Exception:
                logger.exception("Sandbox ticker failed")

    def broker_for(self, path: str) -> BrokerApi:
        return next(api for api in self.brokers if path.startswith(api.prefix))

    @contextlib.contextmanager
    def answering(self):
        """Around the handling of one call, from its request line read to its answer written."""
        with self._answered:
            self._answering += 1
        try:
            yield
        finally:
            with self._answered:
                self._answering -= 1
                self._answered.notify_all()

    def dispatch(self, request: Request) -> Response | None:
        """The answer to one call, or None to drop the connection without answering."""
        if is_control_path(request.path):
            return dispatch_control(self.control, request)
        broker = self.broker_for(request.path)
        outcome = self.state.faults.take(broker.name, request.path)
        if outcome.latency_ms:
            self._sleep(outcome.latency_ms / 1000)
        fault = outcome.fault
        if fault is None:
            response = broker.handle(request)
        elif fault.kind == "drop":
            self.state.stats.record_call(request.method, request.path, "dropped")
            return None
        elif (fault_response := getattr(broker, "fault_response", None)) is not None:
            # Brokers that shape their own failures (Schwab: four error shapes, Retry-After, 401s).
            response = fault_response(fault, request)
        elif fault.kind == "429":
            response = broker.error_response(429, "Too many requests.")
        elif fault.kind == "5xx":
            status = fault.status or 500
            message = "Something went wrong." if status == 500 else "Service temporarily unavailable."
            response = broker.error_response(status, message)
        else:
            response = broker.error_response(403, "Token is invalid or has expired.")
        self.state.stats.record_call(request.method, request.path, str(response.status))
        return response

    def reject(self, method: str, path: str, status: int, message: str) -> Response:
        """An error answer built without the broker's handlers: a body the server refuses to read,
        or a failure inside a handler."""
        if is_control_path(path):
            return control_error(status, message)
        response = self.broker_for(path).error_response(status, message)
        self.state.stats.record_call(method, path, str(status))
        return response


# A client that went away mid-call: Thor gave up waiting (a latency fault past its timeout), a test dropped it.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sandbox: SandboxServer

    def handle_error(self, request, client_address):
        """A broker does not print a traceback when its client hangs up: a call its client stopped waiting
        for is a debug line (socketserver's default printed a traceback on stderr for each, dozens in a soak
        with faults). Anything else is a fault of the sandbox's own and keeps the default."""
        error = sys.exc_info()[1]
        if isinstance(error, CLIENT_GONE):
            logger.debug("Client %s went away before the answer: %s", client_address[0], type(error).__name__)
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ThorBrokerSandbox/1.0"
    # Seconds a client may stall mid-request before its connection is closed.
    timeout = 30
    server: _HTTPServer

    def setup(self):
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm holds the body until the
        # client's delayed ACK (about 40 ms on Linux), a floor under every call a benchmark makes.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        with self.server.sandbox.answering():
            self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        sandbox = self.server.sandbox
        url = urlsplit(self.path)
        path = url.path or "/"
        response: Response | None
        if path == TICKER_PATH and self.command == "GET" and is_upgrade(self.headers):
            self._serve_ticker(parse_qs(url.query))
            return
        if path == STREAMER_PATH and self.command == "GET" and is_upgrade(self.headers):
            self._serve_streamer()
            return
        try:
            body, refusal = self._read_body()
            if refusal is not None:
                self.close_connection = True
                response = sandbox.reject(self.command, path, *refusal)
            else:
                request = Request(
                    method=self.command,
                    path=path,
                    query=parse_qs(url.query, keep_blank_values=True),
                    headers=self.headers,
                    body=body,
                    client_address=self.client_address[0],
                )
                response = sandbox.dispatch(request)
        except Exception:
            logger.exception("Sandbox failed on %s %s", self.command, path)
            response = sandbox.reject(self.command, path, 500, "Internal error.")
        if response is None:
            self.close_connection = True
            return
        self._write(response)

    def _serve_ticker(self, query: dict[str, list[str]]) -> None:
        """Kite's WebSocket: refuse the upgrade as Kite does, or switch protocols and stream until it closes."""
        sandbox = self.server.sandbox
        self.close_connection = True
        admission = sandbox.ticker.admit(self.headers, query)
        sandbox.state.stats.record_call("GET", TICKER_PATH, "101" if isinstance(admission, Admission) else "refused")
        if not isinstance(admission, Admission):
            # KiteTicker's client hangs up once it has read the status line.
            with contextlib.suppress(OSError):
                self._write(admission)
            return
        sandbox.ticker.run(lambda: self._switch_protocols(admission.accept, MAX_MESSAGE_BYTES), admission)

    def _serve_streamer(self) -> None:
        """Schwab's streamer: the upgrade asks for no credentials (the first request logs in)."""
        sandbox = self.server.sandbox
        self.close_connection = True
        key = self.headers.get("Sec-WebSocket-Key", "")
        if not key or self.headers.get("Sec-WebSocket-Version", "") != "13":
            sandbox.state.stats.record_call("GET", STREAMER_PATH, "400")
            with contextlib.suppress(OSError):
                self._write(Response.json({"message": "Send a WebSocket version 13 upgrade."}, 400))
            return
        sandbox.state.stats.record_call("GET", STREAMER_PATH, "101")
        sandbox.streamer.run(self._switch_protocols(accept_key(key), STREAMER_MAX_MESSAGE_BYTES))

    def _switch_protocols(self, accept: str, max_message_bytes: int) -> WebSocket:
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        # A stream waits on its client for as long as it likes; the HTTP idle timeout is not for it.
        self.connection.settimeout(None)
        return WebSocket(self.connection, self.rfile, max_message_bytes=max_message_bytes)

    def _read_body(self) -> tuple[bytes, tuple[int, str] | None]:
        if self.headers.get("Transfer-Encoding"):
            return b"", (411, "Send a Content-Length; chunked bodies are not supported.")
        raw_length = self.headers.get("Content-Length", "0").strip() or "0"
        if not raw_length.isdigit():
            return b"", (400, "Invalid Content-Length.")
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            return b"", (413, "Request body too large.")
        return self.rfile.read(length), None

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format, *args):
        logger.debug("%s - %s", self.address_string(), format % args)
