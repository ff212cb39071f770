"""What the socket benches share (bench/ws_fanout.py, bench/ticks_world.py): the order sockets' clients in a
process of their own, each signed in with its own one-time ticket, and a paper market order's body.

The client process is the bench script itself run as `python bench/<name>.py --client SPEC`: it opens every
socket, prints READY, follows them until a line on its stdin says stop, writes its result file and prints
DONE.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PYTHON, REPO


def client_run(main: Coroutine[Any, Any, None]) -> None:
    """Run a client process's loop on uvloop (Thor's server runs on it, and uvicorn[standard] installs it): the
    clients share the two cores with what they measure, and asyncio's own loop spends more of them on each frame
    read. Without uvloop, asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def market_buy(exchange: str, symbol: str) -> dict:
    """The body of a paper market order for one share."""
    return {
        "tradingsymbol": symbol,
        "exchange": exchange,
        "transaction_type": "BUY",
        "quantity": 1,
        "order_type": "MARKET",
        "product": "CNC",
    }


def clients_process_start(script: str, spec_path: Path, spec: dict) -> subprocess.Popen:
    """Write `spec` and run `script --client SPEC` in a session of its own; back once it has opened its sockets."""
    spec_path.write_text(json.dumps(spec))
    child = subprocess.Popen(
        [PYTHON, script, "--client", str(spec_path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    line = child.stdout.readline()
    if line.strip() != "READY":
        child.kill()
        raise RuntimeError(f"The client process did not open its sockets: {line!r}")
    return child


def clients_process_stop(child: subprocess.Popen, *, timeout: float) -> None:
    """Tell the client process to stop and wait for it (its result file is written once it has said DONE)."""
    child.stdin.write("stop\n")
    child.stdin.flush()
    child.stdout.readline()
    child.wait(timeout=timeout)


class Opening:
    """The client process's sockets opening, each as the SPA opens one: a one-time ticket (`POST /api/ws/ticket`)
    just before each connection (a ticket lives 30 s), and a new one when the socket is refused (4401, a ticket
    the server could not read in time) or fails as `retry_on` says; three tries, at most 50 sockets opening at
    a time."""

    def __init__(self, thor_url: str, ws_url: str):
        self.thor_url, self.ws_url = thor_url, ws_url
        self.opened = 0
        self._gate = asyncio.Semaphore(50)
        self._session = requests.Session()

    def _ticket(self, token: str) -> str:
        response = self._session.post(
            f"{self.thor_url}/api/ws/ticket", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        response.raise_for_status()
        return response.json()["ticket"]

    async def open(
        self, entry: dict, *, retry_on: tuple[type[Exception], ...], open_timeout: float = 10
    ) -> tuple[Any, dict, int]:
        """`/ws/orders/<account>` for `entry` ({"account_id", "token"}): the connection, its first message
        (`subscribed`: from then on what the account publishes reaches it) and how many tries were retried."""
        import websockets

        async with self._gate:
            for tried in range(1, 4):
                ticket = await asyncio.get_running_loop().run_in_executor(None, self._ticket, entry["token"])
                url = f"{self.ws_url}/ws/orders/{entry['account_id']}?ticket={ticket}"
                try:
                    # No client pings: the server's are answered (by websockets, then by the FrameRecorder).
                    connection = await websockets.connect(
                        url, max_queue=None, open_timeout=open_timeout, ping_interval=None
                    )
                    subscribed = json.loads(await connection.recv())
                    break
                except retry_on:
                    if tried == 3:
                        raise RuntimeError("A socket was refused three times") from None
        self.opened += 1
        return connection, subscribed, tried - 1

    async def all_opened(self, tasks: list[asyncio.Task]) -> None:
        """Wait until every task has opened its socket (one that failed meanwhile fails the process), then say
        READY."""
        while self.opened < len(tasks):
            failed = [task for task in tasks if task.done() and task.exception()]
            if failed:
                raise failed[0].exception()
            await asyncio.sleep(0.05)
        print("READY", flush=True)


class FrameRecorder(asyncio.Protocol):
    """A followed socket's receiving end once it is open: each frame's payload kept with when its last byte
    reached the process, pings answered, a close answered and recorded. Nothing else: the clients of a thousand
    sockets share the two cores with what they measure, and websockets' own receiving path (its parser, the
    assembler, a task's wake-up per message) took about half of a client process's CPU in bench/tick_pnl.py.
    Frames from a server are never masked; a client's own (pong, close) always are (RFC 6455 5.3)."""

    def __init__(self, transport: asyncio.Transport):
        self.transport = transport
        self.buffer = bytearray()
        self.frames: list[tuple[float, bytes]] = []
        self.fragments: list[bytes] | None = None  # a fragmented text message's parts so far
        self.close_code: int | str | None = None
        self.closing = False  # a close frame was sent or answered
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        received_at = time.time()
        buffer = self.buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= 2:
            first, length = buffer[offset], buffer[offset + 1] & 0x7F
            header = 2
            if length == 126:
                header = 4
                if len(buffer) - offset < header:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
            elif length == 127:
                header = 10
                if len(buffer) - offset < header:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
            end = offset + header + length
            if len(buffer) < end:
                break
            self._frame(first, bytes(buffer[offset + header : end]), received_at)
            offset = end
        del buffer[:offset]

    def _frame(self, first: int, payload: bytes, received_at: float) -> None:
        final, opcode = first & 0x80, first & 0x0F
        if opcode in (0x1, 0x2):  # text, binary
            if final:
                self.frames.append((received_at, payload))
            else:
                self.fragments = [payload]
        elif opcode == 0x0 and self.fragments is not None:  # continuation
            self.fragments.append(payload)
            if final:
                self.frames.append((received_at, b"".join(self.fragments)))
                self.fragments = None
        elif opcode == 0x9:  # ping
            self.send(0xA, payload)
        elif opcode == 0x8 and not self.closing:  # the server closes: its code, answered; it ends the TCP connection
            self.closing = True
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else "abnormal"
            self.send(0x8, payload[:2])

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        """Close as a client does: a close frame (1000); the server answers and ends the TCP connection."""
        self.send(0x8, (1000).to_bytes(2, "big"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:  # the TCP connection ended with no close frame
            self.close_code = "abnormal"
        if not self.closed.done():
            self.closed.set_result(None)


def _recorder_takes_over(connection: Any) -> FrameRecorder | None:
    """The socket's transport handed to a FrameRecorder, if websockets holds nothing received and not yet read
    (else None: the socket stays websockets')."""
    try:
        transport = connection.transport
        pending = len(connection.recv_messages.frames) or len(connection.protocol.reader.buffer)
    except AttributeError:
        return None
    if pending or transport.is_closing():
        return None
    recorder = FrameRecorder(transport)
    transport.set_protocol(recorder)
    return recorder


async def received_until(
    connection: Any, stop: asyncio.Event, on_message: Callable[[float, dict], None]
) -> int | str | None:
    """Hand each message, with when it arrived, to `on_message` once `stop` is set and the socket closed. The
    close code when the server closed the socket first ("abnormal" when it sent none), else None.

    Only the time of receipt is taken while the socket is followed: the frames are decoded afterwards, so that
    one client process serving a thousand sockets adds as little as it can to the latencies it measures (and a
    FrameRecorder receives them, when it can take the socket over)."""
    recorder = _recorder_takes_over(connection)
    if recorder is None:
        return await _received_by_websockets(connection, stop, on_message)
    waiting = asyncio.ensure_future(stop.wait())
    await asyncio.wait([waiting, recorder.closed], return_when=asyncio.FIRST_COMPLETED)
    closed_by_server = recorder.close_code
    if not recorder.closed.done() and not recorder.closing:
        recorder.closing = True
        recorder.close()
        try:
            await asyncio.wait_for(asyncio.shield(recorder.closed), timeout=5)
        except TimeoutError:
            recorder.transport.abort()
    waiting.cancel()
    for received_at, frame in recorder.frames:
        on_message(received_at, json.loads(frame))
    return closed_by_server


async def _received_by_websockets(
    connection: Any, stop: asyncio.Event, on_message: Callable[[float, dict], None]
) -> int | str | None:
    import websockets

    async def close_when_stopped() -> None:
        await stop.wait()
        await connection.close()

    closer = asyncio.create_task(close_when_stopped())
    frames: list[tuple[float, str]] = []
    closed_by_server: int | str | None = None
    try:
        async for frame in connection:
            frames.append((time.time(), frame))
    except websockets.ConnectionClosed as closed:
        closed_by_server = closed.rcvd.code if closed.rcvd else "abnormal"
    if not stop.is_set() and closed_by_server is None:  # a normal close the server chose
        closed_by_server = connection.close_code
    closer.cancel()
    await connection.close()
    for received_at, frame in frames:
        on_message(received_at, json.loads(frame))
    return closed_by_server
