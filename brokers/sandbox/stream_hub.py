"""What the sandbox's two streaming servers (Kite's ticker, Schwab's streamer) share: the set of open
connections, the loop that serves one until it closes, and cutting or closing them all."""

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from .websocket import OP_TEXT, ProtocolViolation, WebSocket, WebSocketClosed


class Streamed(Protocol):
    socket: WebSocket
    wake: threading.Event


Connection = TypeVar("Connection", bound=Streamed)


class StreamHub(Generic[Connection]):
    """Every open connection of one streaming server. A subclass reads a connection's text messages (`_handle`)
    and sends to it from a thread of its own (`serve`'s `send`), which `wake` hurries."""

    def __init__(self) -> None:
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()

    def _handle(self, connection: Connection, payload: bytes) -> None:
        raise NotImplementedError

    def serve(
        self,
        connection: Connection,
        send: Callable[[Connection], None],
        *,
        name: str,
        registered: Callable[[], None] | None = None,
    ) -> None:
        """Serve one upgraded connection until it closes (in the request handler's thread), `send` running
        beside it in a thread called `name`; `registered` is called under the hub's lock as the connection
        joins the open ones."""
        socket = connection.socket
        with self._lock:
            self._connections.add(connection)
            if registered is not None:
                registered()
        sender = threading.Thread(target=send, args=(connection,), name=name, daemon=True)
        sender.start()
        try:
            while True:
                message = socket.receive()
                if message.opcode == OP_TEXT:
                    self._handle(connection, message.payload)
        except ProtocolViolation as violation:
            socket.close(violation.code, str(violation))
            socket.drain()
        except (WebSocketClosed, OSError):
            pass
        finally:
            socket.drop()
            connection.wake.set()
            with self._lock:
                self._connections.discard(connection)
            sender.join(timeout=2)

    def open_connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    def drop_all(self) -> int:
        """Cut every connection without a close frame, as a network failure would."""
        connections = self._take_all()
        for connection in connections:
            connection.socket.drop()
            connection.wake.set()
        return len(connections)

    def close_all(self) -> None:
        for connection in self._take_all():
            connection.socket.close(1001, "Server shutting down.")
            connection.wake.set()

    def _take_all(self) -> list[Connection]:
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        return connections
