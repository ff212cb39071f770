"""The server side of RFC 6455 over a connection the stdlib HTTP server has already read a request from.

Only what a broker's streaming endpoint needs: the opening handshake, unmasking the client's frames
(fragmented messages reassembled), text, binary, ping/pong and close. No extensions, no subprotocols:
Kite's ticker asks for none.
"""

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from dataclasses import dataclass
from io import BufferedIOBase

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CONTROL_OPCODES = {OP_CLOSE, OP_PING, OP_PONG}

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009
# How long a close waits for the client's close frame before shutting the socket.
CLOSE_GRACE_SECONDS = 2.0


class WebSocketClosed(Exception):
    """The peer closed the connection (with a close frame or without one)."""


class ProtocolViolation(Exception):
    def __init__(self, message: str, code: int = CLOSE_PROTOCOL_ERROR):
        super().__init__(message)
        self.code = code


def accept_key(client_key: str) -> str:
    """Sec-WebSocket-Accept for the client's Sec-WebSocket-Key."""
    # SHA-1 because RFC 6455 says so: a fingerprint of the handshake, not a security measure.
    digest = hashlib.sha1((client_key.strip() + GUID).encode("ascii"), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def is_upgrade(headers) -> bool:
    connection = {part.strip().lower() for part in headers.get("Connection", "").split(",")}
    return headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in connection


@dataclass
class Message:
    opcode: int  # OP_TEXT or OP_BINARY
    payload: bytes


class WebSocket:
    """One upgraded connection. `receive()` from one thread; `send_*` from any (writes are serialised)."""

    def __init__(self, connection: socket.socket, reader: BufferedIOBase, *, max_message_bytes: int):
        self.connection = connection
        self._reader = reader
        self._max_message_bytes = max_message_bytes
        self._send_lock = threading.Lock()
        # Closing: our close frame is sent and we wait for the client's; closed: the socket is shut.
        self.closing = False
        self.closed = False

    def receive(self) -> Message:
        """The next text or binary message; answers pings and closes on the way."""
        opcode, parts, size = None, [], 0
        while True:
            fin, frame_opcode, payload = self._read_frame()
            if frame_opcode in CONTROL_OPCODES:
                self._control(frame_opcode, payload)
                continue
            if self.closing:
                continue  # what the client sent before it read our close frame
            if frame_opcode == OP_CONTINUATION:
                if opcode is None:
                    raise ProtocolViolation("Continuation frame without a message.")
            elif opcode is not None:
                raise ProtocolViolation("New message inside a fragmented one.")
            elif frame_opcode not in (OP_TEXT, OP_BINARY):
                raise ProtocolViolation(f"Unknown opcode {frame_opcode}.")
            else:
                opcode = frame_opcode
            size += len(payload)
            if size > self._max_message_bytes:
                raise ProtocolViolation("Message too big.", CLOSE_TOO_BIG)
            parts.append(payload)
            if fin:
                return Message(opcode, b"".join(parts))

    def send_binary(self, payload: bytes) -> None:
        self._send_frame(OP_BINARY, payload)

    def send_text(self, text: str) -> None:
        self._send_frame(OP_TEXT, text.encode("utf-8"))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame; the socket is shut when the client's close frame comes back, or after
        CLOSE_GRACE_SECONDS. Shutting it at once would lose the frame: data the client sends in the
        meantime would meet a shut socket, whose reset discards what the client has not read yet."""
        frame = _frame(OP_CLOSE, struct.pack(">H", code) + reason.encode("utf-8")[:120])
        with self._send_lock:
            if self.closing or self.closed:
                return
            self.closing = True
            try:
                self.connection.sendall(frame)
            except OSError:
                self.closed = True
        if self.closed:
            self.drop()
            return
        timer = threading.Timer(CLOSE_GRACE_SECONDS, self.drop)
        timer.daemon = True
        timer.start()

    def drain(self) -> None:
        """Read and discard until the connection ends (after `close()`, from the reading thread)."""
        with contextlib.suppress(OSError, ValueError):
            while self._reader.read(65536):
                pass

    def drop(self) -> None:
        """Cut the connection with no close frame, as a network failure does."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            with contextlib.suppress(WebSocketClosed):
                self._send_frame(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if not self.closing:  # the client closes: answer with its code
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NORMAL
                self.close(code)
            self.drop()
            raise WebSocketClosed()

    def _read_exactly(self, count: int) -> bytes:
        data = self._reader.read(count) if count else b""
        if len(data) < count:
            raise WebSocketClosed()
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read_exactly(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            raise ProtocolViolation("Reserved bits set without an extension.")
        if not second & 0x80:
            raise ProtocolViolation("Client frames must be masked.")
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read_exactly(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read_exactly(8))[0]
        if opcode in CONTROL_OPCODES and (length > 125 or not fin):
            raise ProtocolViolation("Control frames must be short and whole.")
        if length > self._max_message_bytes:
            raise ProtocolViolation("Message too big.", CLOSE_TOO_BIG)
        mask = self._read_exactly(4)
        masked = self._read_exactly(length)
        # XOR with the 4-byte mask repeated, as one big integer (much faster than byte by byte).
        repeated = (mask * (length // 4 + 1))[:length]
        payload = (int.from_bytes(masked, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
        return fin, opcode, payload

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        frame = _frame(opcode, payload)
        with self._send_lock:
            if self.closing or self.closed:
                raise WebSocketClosed()
            self.connection.sendall(frame)


def _frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = struct.pack(">BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        header = struct.pack(">BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack(">BBQ", 0x80 | opcode, 127, length)
    return header + payload
