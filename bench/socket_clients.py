"""What the socket benches share (bench/ws_fanout.py, bench/ticks_world.py): the order sockets' clients in a
process of their own, each signed in with its own one-time ticket, and a paper market order's body.

The client process is the bench script itself run as `python bench/<name>.py --client SPEC`: it opens every
socket, prints READY, follows them until a line on its stdin says stop, writes its result file and prints
DONE.
"""

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import requests
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
                    connection = await websockets.connect(url, max_queue=None, open_timeout=open_timeout)
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


async def received_until(
    connection: Any, stop: asyncio.Event, on_message: Callable[[float, dict], None]
) -> int | str | None:
    """Hand each message, with when it arrived, to `on_message` once `stop` is set and the socket closed. The
    close code when the server closed the socket first ("abnormal" when it sent none), else None.

    Only the time of receipt is taken while the socket is followed: the frames are decoded afterwards, so that
    one client process serving a thousand sockets adds as little as it can to the latencies it measures."""
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
