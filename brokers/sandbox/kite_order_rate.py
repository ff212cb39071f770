"""Kite's limits on a user's order calls, as Kite enforces them: at most 10 in any second and 400 in any minute
per Kite user, whatever app sends them (place, modify and cancel alike). A call over either is answered 429
"Too many requests" (a NetworkException) and not taken. The sandbox counts on its own clock, as Kite does on
its: Thor's limits (brokers.adapters.kite_limits) must keep a user under these however the calls travel."""

import threading
import time
from collections import deque

from .kite_models import KiteError

WINDOWS = ((10, 1.0), (400, 60.0))  # (calls, seconds)


class OrderRate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}

    def admit(self, user_id: str) -> None:
        """Count one order call of `user_id`, or raise Kite's 429 when a window is full."""
        with self._lock:
            now = time.monotonic()
            calls = self._calls.setdefault(user_id, deque())
            longest = max(seconds for _, seconds in WINDOWS)
            while calls and calls[0] <= now - longest:
                calls.popleft()
            for limit, seconds in WINDOWS:
                if sum(1 for at in calls if at > now - seconds) >= limit:
                    raise KiteError(429, "NetworkException", "Too many requests")
            calls.append(now)

    def forget(self, user_id: str) -> None:
        """As if `user_id`'s calls were made long ago: a test's way to let the windows pass without waiting."""
        with self._lock:
            self._calls.pop(user_id, None)
