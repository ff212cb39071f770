"""Broker-neutral sandbox state: call statistics, injected faults and outgoing postbacks."""

import json
import logging
import queue
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

logger = logging.getLogger("thor.sandbox")

BROKERS = ("kite", "schwab", "google", "discord")
FAULT_KINDS = ("latency", "429", "5xx", "token_expired", "drop")
# Schwab's other error shapes (its `errors` list, OAuth's, the gateway's `fault`, an HTML page) and its
# 201 without a Location header: faults only the Schwab sandbox makes.
SCHWAB_FAULT_KINDS = ("error_list", "oauth_error", "gateway_fault", "html_page", "no_location")
# Kite's autoslice placed some slices and not others: `slices` (1-based) answer an `error` child. The call
# itself succeeds, so this fault never decides a call's answer; an autoslice placement consumes it.
SLICE_REJECT = "slice_reject"


class CallStats:
    def __init__(self, lock: threading.RLock):
        self._lock = lock
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._by_path: Counter[str] = Counter()
            self._by_status: Counter[str] = Counter()
            self._postbacks: Counter[str] = Counter()

    def record_call(self, method: str, path: str, status: str) -> None:
        with self._lock:
            self._by_path[f"{method} {path}"] += 1
            self._by_status[status] += 1

    def record_postback(self, delivered: bool) -> None:
        with self._lock:
            self._postbacks["sent" if delivered else "failed"] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "total": sum(self._by_path.values()),
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
                "postbacks": {"sent": self._postbacks["sent"], "failed": self._postbacks["failed"]},
            }


@dataclass
class Fault:
    broker: str
    kind: str
    path: str | None = None
    count: int | None = None
    ms: int = 0
    status: int | None = None
    slices: tuple[int, ...] = ()
    message: str = ""

    @classmethod
    def from_mapping(cls, data: Mapping) -> "Fault":
        """Validate a fault as posted to `/_sandbox/faults`; raises ValueError with a readable reason."""
        if not isinstance(data, Mapping):
            raise ValueError("A fault must be a JSON object")
        broker = data.get("broker")
        kind = str(data.get("kind"))
        if broker not in BROKERS:
            raise ValueError(f"`broker` must be one of {', '.join(BROKERS)}")
        kinds = (*FAULT_KINDS, *SCHWAB_FAULT_KINDS, SLICE_REJECT)
        if kind not in kinds:
            raise ValueError(f"`kind` must be one of {', '.join(kinds)}")
        if kind in SCHWAB_FAULT_KINDS and broker != "schwab":
            raise ValueError(f"`{kind}` faults are Schwab's only")
        path = data.get("path")
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise ValueError("`path` must be a path prefix starting with /")
        count = data.get("count")
        if count is not None and (not _is_int(count) or count < 1):
            raise ValueError("`count` must be a positive integer")
        ms = data.get("ms", 0)
        if not _is_int(ms) or ms < 0:
            raise ValueError("`ms` must be a non-negative integer")
        if kind == "latency" and ms == 0:
            raise ValueError("A latency fault needs `ms`")
        status = data.get("status")
        if status is not None and (kind != "5xx" or not _is_int(status) or not 500 <= status <= 599):
            raise ValueError("`status` is only for 5xx faults and must be 500-599")
        slices, message = _slice_reject_fields(data, kind=kind, broker=broker)
        return cls(
            broker=broker, kind=kind, path=path, count=count, ms=ms, status=status, slices=slices, message=message
        )

    def applies_to(self, broker: str, path: str) -> bool:
        return self.broker == broker and (self.path is None or path.startswith(self.path))


def _slice_reject_fields(data: Mapping, *, kind: str, broker: str) -> tuple[tuple[int, ...], str]:
    slices, message = data.get("slices"), data.get("message", "")
    if kind != SLICE_REJECT:
        if slices is not None or message:
            raise ValueError("`slices` and `message` are for slice_reject faults only")
        return (), ""
    if broker != "kite":
        raise ValueError("`slice_reject` faults are Kite's only (its autoslice)")
    if not isinstance(slices, list) or not slices or not all(_is_int(index) and index >= 1 for index in slices):
        raise ValueError("`slices` must be a non-empty list of slice numbers, from 1")
    if not isinstance(message, str) or len(message) > 500:
        raise ValueError("`message` must be text of at most 500 characters")
    return tuple(sorted(set(slices))), message


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class FaultOutcome:
    latency_ms: int = 0
    fault: Fault | None = None


class FaultBook:
    def __init__(self, lock: threading.RLock, faults: Iterable[Fault | Mapping] = ()):
        self._lock = lock
        self._faults: list[Fault] = []
        for fault in faults:
            self.add(fault if isinstance(fault, Fault) else Fault.from_mapping(fault))

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def listing(self) -> list[dict]:
        with self._lock:
            return [asdict(fault) for fault in self._faults]

    def take(self, broker: str, path: str) -> FaultOutcome:
        """Consume the faults that apply to one call: every matching latency adds up, and the
        first matching failure (429, 5xx, token_expired, drop) decides the answer."""
        outcome = FaultOutcome()
        with self._lock:
            for fault in list(self._faults):
                if not fault.applies_to(broker, path) or fault.kind == SLICE_REJECT:
                    continue
                if fault.kind == "latency":
                    outcome.latency_ms += fault.ms
                elif outcome.fault is None:
                    outcome.fault = fault
                else:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
        return outcome

    def slice_rejections(self, broker: str, path: str) -> dict[int, str]:
        """The slices (1-based) an autoslice placement on `path` answers as errors, with each one's message
        (empty: the sandbox's own); consumes one use of each matching slice_reject fault."""
        rejected: dict[int, str] = {}
        with self._lock:
            for fault in list(self._faults):
                if fault.kind != SLICE_REJECT or not fault.applies_to(broker, path):
                    continue
                rejected.update(dict.fromkeys(fault.slices, fault.message))
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
        return rejected


class PostbackSender:
    """Delivers postbacks from one background thread, in order, so a request never waits on them."""

    TIMEOUT_SECONDS = 5

    def __init__(self, stats: CallStats):
        self._stats = stats
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def send(self, url: str, payload: dict) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver_forever, name="sandbox-postbacks", daemon=True)
                self._thread.start()
        self._queue.put((url, payload))

    def close(self) -> None:
        with self._start_lock:
            if self._thread is None:
                return
            self._queue.put(None)
            self._thread.join(timeout=self.TIMEOUT_SECONDS)
            self._thread = None

    def _deliver_forever(self) -> None:
        while (item := self._queue.get()) is not None:
            url, payload = item
            self._stats.record_postback(self._deliver(url, payload))

    def _deliver(self, url: str, payload: dict) -> bool:
        # Only apps can set postback URLs, and KiteApp accepts http(s) URLs only.
        request = urllib.request.Request(  # noqa: S310
            url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.TIMEOUT_SECONDS) as response:  # noqa: S310
                return 200 <= response.status < 300
        except Exception as error:
            logger.info("Postback to %s failed: %s", url, error)
            return False


class ClockIds:
    """Increasing integers that start from the clock: each is the clock's count of `per_second` units
    since `origin(now)`, or one above the last it gave when that is higher.

    A sandbox keeps nothing across restarts, but Thor's database does: ids counted from 1 would name a
    restarted sandbox's orders like the last run's (and its fills would reach those old rows). Started
    from the clock, a restarted sandbox continues above every id it gave before, as the real brokers do.
    `origin` may move forward (Kite's ids count from midnight under a date prefix): the count restarts there.
    """

    def __init__(self, clock, *, per_second: int, origin=lambda now: 0.0):
        self._clock = clock
        self._per_second = per_second
        self._origin = origin
        self._last: tuple[float, int] | None = None

    def next(self) -> tuple[float, int]:
        """(the origin it counts from, the id); the caller holds the sandbox lock."""
        now = self._clock()
        origin = self._origin(now)
        candidate = int((now - origin) * self._per_second)
        if self._last is not None and self._last[0] == origin:
            candidate = max(candidate, self._last[1] + 1)
        self._last = (origin, candidate)
        return self._last
