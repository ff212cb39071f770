"""Measuring a running server: a Python load loop, wrk, percentiles, the host's steal, the verdict line.

Split from bench/harness.py, which builds the worlds these measure.
"""

import http.client
import io
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    """One load phase (or several merged): latencies in seconds, statuses, and each body's `source`."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return percentile(sorted(self.latencies), p)

    def merge(self, other: "LoadResult") -> None:
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.statuses += other.statuses
        self.sources += other.sources


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _source_of(body: bytes) -> str:
    # A byte search instead of json.loads: the load generator shares the CPU with the server.
    start = body.find(b'"source":"')
    if start < 0:
        return "-"
    start += len(b'"source":"')
    return body[start : body.find(b'"', start)].decode()


def run_load(url: str, path: str, token: str, *, connections: int, seconds: float) -> LoadResult:
    """`connections` threads, each on one keep-alive connection, sending GET `path` back to back for `seconds`."""
    parts = urlsplit(url)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    per_thread = [LoadResult() for _ in range(connections)]
    ready = threading.Barrier(connections + 1)
    deadline = [0.0]

    def client(result: LoadResult) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        ready.wait()
        while (started := time.perf_counter()) < deadline[0]:
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                result.statuses["connection error"] += 1
                conn.close()
                continue
            result.latencies.append(time.perf_counter() - started)
            result.statuses[response.status] += 1
            result.sources[_source_of(body)] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(result,), daemon=True) for result in per_thread]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    ready.wait()
    for thread in threads:
        thread.join()
    total = LoadResult()
    for result in per_thread:
        total.merge(result)
    # Requests in flight at the deadline finish after it: measure the real span, not the nominal one.
    total.seconds = time.perf_counter() - began
    return total


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian's packages when missing and this process may (root, apt-get)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is not installed: apt-get install -y wrk")
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL, check=True)
            subprocess.run(install, stdout=subprocess.DEVNULL, check=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("The benchmarks need wrk (a C HTTP load generator): sudo apt-get install wrk")
    return found


@dataclass
class WrkResult:
    """What wrk reports for one run: throughput, latency percentiles (seconds), and anything that went wrong."""

    requests: int = 0
    seconds: float = 0.0
    p50: float = math.nan
    p99: float = math.nan
    non_2xx: int = 0
    socket_errors: int = 0
    # The share of this machine's CPU time the host gave to others while the run lasted (/proc/stat steal).
    stolen: float = 0.0

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        return self.requests > 0 and self.non_2xx == 0 and self.socket_errors == 0


_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _wrk_seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-z]+)", text).groups()
    return float(number) * _WRK_UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    result = WrkResult()
    if found := re.search(r"(\d+) requests in ([0-9.]+[a-z]+)", output):
        result.requests, result.seconds = int(found.group(1)), _wrk_seconds(found.group(2))
    for percent, field_name in (("50", "p50"), ("99", "p99")):
        if found := re.search(rf"^\s+{percent}(?:\.000)?%\s+([0-9.]+[a-z]+)", output, re.MULTILINE):
            setattr(result, field_name, _wrk_seconds(found.group(1)))
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        result.non_2xx = int(found.group(1))
    if found := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        result.socket_errors = sum(int(value) for value in found.groups())
    return result


def wrk_load(url: str, path: str, token: str | None, *, connections: int, seconds: float) -> WrkResult:
    """wrk with one thread and `connections` keep-alive connections, GET `path` back to back for `seconds`."""
    headers = ["-H", "Accept: application/json"]
    if token:
        headers += ["-H", f"Authorization: Bearer {token}"]
    argv = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", *headers, url + path]
    before = _cpu_ticks()
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed: {completed.stderr or completed.stdout}")
    result = parse_wrk(completed.stdout)
    result.stolen = _stolen_share(before, _cpu_ticks())
    return result


def _cpu_ticks() -> list[int]:
    """The machine's CPU time by kind (/proc/stat's first line), or nothing where there is no /proc."""
    try:
        with open("/proc/stat") as stat:
            return [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return []


def _stolen_share(before: list[int], after: list[int]) -> float:
    if len(before) < 8 or len(after) < 8:
        return 0.0
    spent = [late - early for early, late in zip(before, after, strict=True)]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already inside user and nice]
    total = sum(spent[:8])
    return spent[7] / total if total else 0.0


def machine_note(server: str) -> str:
    return (
        f"Machine: {os.cpu_count()} cores shared by {server} and this load generator "
        f"(Python threads, one keep-alive http.client connection each), so absolute figures are pessimistic."
    )


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL  <<<<<<<<"


def wsgi_environ(path: str, token: str, *, method: str = "GET", body: bytes = b"", **headers: str) -> dict:
    """One request as a WSGI server hands it to the application, for the in-process profiles."""
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_ACCEPT": "application/json",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        **headers,
    }
    if body:
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)))
    return environ
