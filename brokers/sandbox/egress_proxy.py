"""A small HTTP proxy standing in for the one a user runs on their registered static IP (development and
tests: `run_broker_sandbox --egress-proxy`, brokers/tests).

It listens on `address` (a loopback alias such as 127.0.0.2: every 127.0.0.0/8 address is local on Linux)
and opens every upstream connection from that same address, so the sandbox sees the call come from it, as
Kite sees the user's static IP. It tunnels a CONNECT (what a client does for an https:// broker) and relays
an absolute-form request (what requests does for the sandbox's http:// root) as is: the sandbox reads
absolute-form request lines, as HTTP/1.1 servers must. It takes any Proxy-Authorization and checks none.
"""

import contextlib
import socket
import threading
from urllib.parse import urlsplit


class EgressProxy:
    def __init__(self, address: str, port: int = 0):
        self.address = address
        self.connects: list[str] = []  # CONNECT targets, in order
        self.requests: list[str] = []  # request lines relayed (the first of each connection)
        self._server = socket.create_server((address, port))
        self.port = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}{self.address}:{self.port}"

    def close(self) -> None:
        # shutdown() first: a bare close() leaves the accepting thread listening on the port (Linux).
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                self.connects.append(target)
                rest = head.split(b"\r\n\r\n", 1)[1]
                greeting = b"HTTP/1.1 200 Connection established\r\n\r\n"
            else:
                parts = urlsplit(target)
                host, port = parts.hostname or "", str(parts.port or 80)
                self.requests.append(f"{method} {target}")
                rest, greeting = head, b""
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10, source_address=(self.address, 0))
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                client.sendall(greeting)
                upstream.sendall(rest)
                pump = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
                pump.start()
                _pipe(client, upstream)
                pump.join(timeout=10)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
