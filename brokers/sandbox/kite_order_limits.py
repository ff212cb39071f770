"""Kite's limits on a user's order calls, as Kite enforces them.

- At most 10 in any second and 400 in any minute per Kite user, whatever app sends them (place, modify and
  cancel alike). A call over either is answered 429 "Too many requests" (a NetworkException) and not taken. The
  sandbox counts on its own clock, as Kite does on its: Thor's limits (brokers.adapters.kite_limits) must keep a
  user under these however the calls travel.
- 25 modifications of one order; the 26th is refused as a NetworkException (Kite's forum, 2021-23).
"""

import threading
import time
from collections import deque

from .kite_models import KiteError

WINDOWS = ((10, 1.0), (400, 60.0))  # (calls, seconds)
MODIFICATIONS_PER_ORDER = 25


def modification_check(history: list[dict]) -> None:
    """Raise Kite's refusal when the order (its status history) has been modified as often as Kite allows."""
    if sum(entry["status"] == "MODIFIED" for entry in history) >= MODIFICATIONS_PER_ORDER:
        raise KiteError(400, "NetworkException", "Maximum allowed order modifications exceeded.")


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
