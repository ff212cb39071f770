"""When each tick left the sandbox's Kite ticker: a private log for benchmarks (bench/tick_pnl.py), off unless asked.

`POST /_sandbox/ticker/sent {"capacity": N}` starts a new log of the last N packets sent, on every ticker
connection; `GET /_sandbox/ticker/sent?after=SEQ&limit=L` pages through it; `DELETE` turns it off. Each entry
is `[seq, connection id, instrument token, last price, sent at]`: the price as the client decodes it (the
packet's integer over the segment's divisor), `sent at` the wall-clock time (epoch seconds) just before the
message carrying it was written to the socket, so a client in another process on the same machine can time
the tick against its own clock. The answer also names each connection's Kite user, so a reader can tell one
client's ticks from another's. When off, the ticker pays one attribute read a message.
"""

import threading
from collections import deque

from .web import Request, Response

# A full minute of 3,000 instruments on three connections, with room to spare.
MAX_CAPACITY = 2_000_000
MAX_PAGE = 200_000


class SentTicks:
    """A bounded ring of the packets sent, numbered from 1 in the order they were sent."""

    def __init__(self, capacity: int):
        self._entries: deque[tuple[int, str, int, float, float]] = deque(maxlen=capacity)
        self._seq = 0
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def record(self, connection_id: str, user_id: str, sent_at: float, prices: list[tuple[int, float]]) -> None:
        """One message's (token, last price) pairs, sent at `sent_at` on the connection."""
        with self._lock:
            self._users[connection_id] = user_id
            for token, price in prices:
                self._seq += 1
                self._entries.append((self._seq, connection_id, token, price, sent_at))

    def read(self, *, after: int, limit: int) -> dict:
        with self._lock:
            entries = [entry for entry in self._entries if entry[0] > after][:limit]
            first_kept = self._entries[0][0] if self._entries else self._seq + 1
            return {
                "ticks": [list(entry) for entry in entries],
                "next": entries[-1][0] if entries else max(after, self._seq),
                # Entries after `after` the ring no longer holds (it was too small for the reader's pace).
                "lost": max(0, first_kept - after - 1),
                "connections": dict(self._users),
            }


def _int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = (request.query.get(name) or [str(default)])[0]
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"`{name}` must be a whole number from {low} to {high}.")
    return int(raw)


def add_ticker_log_routes(router, ticker) -> None:
    """`ticker` is the KiteTickerHub whose `sent` log these turn on, read and turn off."""

    def start(request: Request) -> Response:
        try:
            payload = request.json() if request.body else {}
        except ValueError:
            raise ValueError("The body must be JSON.") from None
        capacity = payload.get("capacity", 100_000) if isinstance(payload, dict) else None
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f'Send {{"capacity": N}}, N from 1 to {MAX_CAPACITY}.')
        ticker.sent = SentTicks(capacity)
        return Response.json({"capacity": capacity}, status=201)

    def read(request: Request) -> Response:
        if ticker.sent is None:
            return Response.json({"error": "The sent-ticks log is off: POST /_sandbox/ticker/sent first."}, 409)
        after = _int_param(request, "after", 0, low=0, high=2**62)
        limit = _int_param(request, "limit", MAX_PAGE, low=1, high=MAX_PAGE)
        return Response.json(ticker.sent.read(after=after, limit=limit))

    def stop(_: Request) -> Response:
        ticker.sent = None
        return Response.json({"capacity": 0})

    router.add("POST", "/_sandbox/ticker/sent", start)
    router.add("GET", "/_sandbox/ticker/sent", read)
    router.add("DELETE", "/_sandbox/ticker/sent", stop)
