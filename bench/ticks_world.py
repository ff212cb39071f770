"""The tick bench's world (bench/tick_pnl.py): the sandbox, Thor, the market stream, paper accounts holding the
instruments, the sockets that follow them and the baseline KiteTicker client.

Every process runs as production runs it: the broker sandbox (`manage.py run_broker_sandbox`, its whole
universe), Thor (`python -m thor.serve`, uvicorn), the market stream (`manage.py run_market_stream`) on the
tenant's market-data session (its shared Kite app, logged in as the sandbox's AB1234), and the sockets in a
process of their own (`python bench/ticks_world.py --client SPEC`). The baseline client logs in as the other
demo user (CD5678), so the sandbox's list of ticker connections tells the two apart.
"""

import asyncio
import csv
import gc
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import socket_clients
from harness import KITE_API_KEY, KITE_API_SECRET, PYTHON, REPO, manage
from ws_fanout import make_users

TENANT = "bench-ticks"
# Enough for any account to buy one share of every instrument it is given (the dearest cost about 4,000).
STARTING_CASH = "100000000"
THOR_KITE_USER, BASELINE_KITE_USER, KITE_PASSWORD = "AB1234", "CD5678", "sandbox"


@dataclass(frozen=True)
class Listed:
    token: int
    exchange: str
    symbol: str

    @property
    def name(self) -> str:
        return f"{self.exchange}:{self.symbol}"


# --- set-up ----------------------------------------------------------------------------------------


def master_load(env: dict, sandbox_url: str, count: int) -> list[Listed]:
    """Load the sandbox's NSE dump into Thor's instrument master (`load_instruments --file`, as the daily load
    reads Kite's) and pick `count` NSE equities, the dearest first: a price of a few thousand moves by at least
    a tick (0.05) nearly every second on the sandbox's slow oscillation, so nearly every tick moves a P&L."""
    response = requests.get(f"{sandbox_url}/instruments/NSE", timeout=60)
    response.raise_for_status()
    dump = Path(tempfile.mkdtemp(prefix="thor-ticks-")) / "instruments_nse.csv"
    dump.write_text(response.text)
    manage(env, "load_instruments", "--file", str(dump))
    rows = [
        row
        for row in csv.DictReader(response.text.splitlines())
        if row["instrument_type"] == "EQ" and row["segment"] == "NSE"
    ]
    rows.sort(key=lambda row: (-float(row["last_price"] or 0), int(row["instrument_token"])))
    if len(rows) < count:
        raise RuntimeError(f"The sandbox lists {len(rows)} NSE equities, fewer than {count}")
    return [Listed(int(row["instrument_token"]), "NSE", row["tradingsymbol"]) for row in rows[:count]]


def kite_access_token(sandbox_url: str, user_id: str) -> str:
    """A Kite session at the sandbox through the official client: the login form, then generate_session."""
    from kiteconnect import KiteConnect

    login = requests.post(
        f"{sandbox_url}/connect/login",
        data={"api_key": KITE_API_KEY, "user_id": user_id, "password": KITE_PASSWORD, "redirect_params": ""},
        allow_redirects=False,
        timeout=10,
    )
    request_token = parse_qs(urlsplit(login.headers["Location"]).query)["request_token"][0]
    session = KiteConnect(api_key=KITE_API_KEY, root=sandbox_url).generate_session(
        request_token, api_secret=KITE_API_SECRET
    )
    return session["access_token"]


MARKET_DATA_SESSION = """
from accounts.models import TradingAccount
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
user = TradingAccount.objects.get(pk={account_id}).user
app = BrokerApp.objects.create(
    tenant=user.tenant, owner=None, kind=BrokerKind.KITE, api_key="{api_key}", api_secret="{api_secret}"
)
BrokerConnection.objects.create(
    user=user, app=app, status=BrokerConnection.Status.ACTIVE, broker_user_id="{kite_user}", access_token="{token}"
)
"""


def market_data_session_create(
    env: dict, *, account_id: int, access_token: str, kite_user: str = THOR_KITE_USER
) -> None:
    """The tenant's shared Kite app and its active connection (the session of `kite_user`, whose token it is):
    what `run_market_stream` streams on and the quote service asks through."""
    code = MARKET_DATA_SESSION.format(
        account_id=account_id,
        api_key=KITE_API_KEY,
        api_secret=KITE_API_SECRET,
        kite_user=kite_user,
        token=access_token,
    )
    subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=REPO, env=env, check=True, capture_output=True)


def users_create(env: dict, count: int) -> list[dict]:
    return make_users(env, count, tenant=TENANT)


def holders_of(instruments: list[Listed], users: list[dict]) -> dict[int, list[int]]:
    """Instrument number i goes to account i mod accounts: every instrument held, the accounts evenly loaded."""
    return {listed.token: [users[number % len(users)]["account_id"]] for number, listed in enumerate(instruments)}


@dataclass
class Placed:
    statuses: dict = field(default_factory=dict)
    first_refusal: str = ""


BUY_TRIES = 30


def positions_open(thor_url: str, users: list[dict], instruments: list[Listed]) -> Placed:
    """One share of each instrument bought at market on its holder's paper account, over Thor's HTTP API."""
    placed, lock = Placed(), threading.Lock()

    def buy(number: int) -> None:
        user, listed = users[number % len(users)], instruments[number]
        body = socket_clients.market_buy(listed.exchange, listed.symbol)
        for _ in range(BUY_TRIES):
            response = requests.post(
                f"{thor_url}/api/accounts/{user['account_id']}/orders",
                json=body,
                headers={"Authorization": f"Bearer {user['token']}"},
                timeout=60,
            )
            # 503: the quote service's upstream budget (one Kite quote call a second) is spent; it comes back.
            if response.status_code != 503:
                break
            time.sleep(1)
        with lock:
            placed.statuses[response.status_code] = placed.statuses.get(response.status_code, 0) + 1
            if response.status_code != 201 and not placed.first_refusal:
                placed.first_refusal = response.text[:300]

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(buy, range(len(instruments))))
    return placed


# --- the sandbox's view ----------------------------------------------------------------------------


def ticker_connections(sandbox_url: str) -> list[dict]:
    return requests.get(f"{sandbox_url}/_sandbox/ticker", timeout=10).json()


def sent_log_start(sandbox_url: str, capacity: int) -> None:
    requests.post(f"{sandbox_url}/_sandbox/ticker/sent", json={"capacity": capacity}, timeout=10).raise_for_status()


def sent_log_read(sandbox_url: str) -> tuple[list[list], dict[str, str], int]:
    """Every tick the log holds ([seq, connection id, token, price, sent at]), each connection's Kite user,
    and how many the ring lost."""
    ticks, after, lost, users = [], 0, 0, {}
    while True:
        page = requests.get(f"{sandbox_url}/_sandbox/ticker/sent", params={"after": after}, timeout=60).json()
        ticks += page["ticks"]
        lost += page["lost"]
        users = page["connections"]
        if not page["ticks"]:
            return ticks, users, lost
        after = page["next"]


# --- the baseline: the sandbox straight to one official KiteTicker ------------------------------------


class BaselineTicker:
    """kiteconnect.KiteTicker on its own session, full mode on the same instruments; when each tick arrived."""

    def __init__(self, sandbox_url: str, access_token: str, tokens: list[int]):
        from kiteconnect import KiteTicker

        # Its own close, at the end of the run, is no error worth a line on the report.
        logging.getLogger("kiteconnect.ticker").setLevel(logging.CRITICAL)
        root = sandbox_url.replace("http://", "ws://", 1) + "/ws"
        self.ticker = KiteTicker(KITE_API_KEY, access_token, root=root)
        self.tokens = tokens
        self.receipts: list[tuple[float, list[tuple[int, float]]]] = []
        self.ticker.on_connect = self._on_connect
        self.ticker.on_ticks = self._on_ticks

    def start(self) -> None:
        self.ticker.connect(threaded=True)

    def stop(self) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(self.ticker.stop_retry)
        reactor.callFromThread(self.ticker.close)

    def _on_connect(self, ticker, _response) -> None:
        ticker.subscribe(self.tokens)
        ticker.set_mode(ticker.MODE_FULL, self.tokens)

    def _on_ticks(self, _ticker, ticks: list[dict]) -> None:
        received_at = time.time()  # KiteTicker has parsed the message: when the application gets the ticks
        self.receipts.append((received_at, [(tick["instrument_token"], tick["last_price"]) for tick in ticks]))


# --- the sockets, in a process of their own ----------------------------------------------------------


def clients_start(
    thor_url: str, ws_url: str, sockets: list[dict], processes: int = 1
) -> list[tuple[subprocess.Popen, Path]]:
    """The sockets dealt out over `processes` client processes (each a loop of its own, as browsers are), each
    with its result file."""
    workdir = Path(tempfile.mkdtemp(prefix="thor-ticks-clients-"))
    started = []
    for number in range(processes):
        result_path = workdir / f"result-{number}.json"
        spec = {
            "thor_url": thor_url,
            "ws_url": ws_url,
            "sockets": sockets[number::processes],
            "result_path": str(result_path),
        }
        child = socket_clients.clients_process_start(__file__, workdir / f"spec-{number}.json", spec)
        started.append((child, result_path))
    return started


def clients_finish(clients: list[tuple[subprocess.Popen, Path]]) -> list[dict]:
    results = []
    for child, result_path in clients:
        socket_clients.clients_process_stop(child, timeout=120)
        results.extend(json.loads(result_path.read_text()))
    return results


async def client_main(spec_path: str) -> None:
    """Each socket signs in with its own ticket, follows its account and keeps every `position_prices` it gets:
    [received at, as_of (epoch seconds), [[EXCHANGE:SYMBOL, last_price], ...]]."""
    from datetime import datetime

    import websockets

    spec = json.loads(Path(spec_path).read_text())
    opening = socket_clients.Opening(spec["thor_url"], spec["ws_url"])
    results, stop = [], asyncio.Event()

    async def follow(entry: dict) -> None:
        result = {"account_id": entry["account_id"], "messages": [], "other": {}, "closed": None, "retries": 0}
        results.append(result)
        # Also a new ticket when the handshake timed out on the busy machine.
        connection, _subscribed, result["retries"] = await opening.open(
            entry,
            retry_on=(websockets.ConnectionClosed, websockets.InvalidHandshake, TimeoutError, OSError),
            open_timeout=60,
        )

        def keep(received_at: float, message: dict) -> None:
            kind = message.get("type")
            if kind != "position_prices":
                result["other"][kind] = result["other"].get(kind, 0) + 1
                return
            as_of = datetime.fromisoformat(message["as_of"]).timestamp()
            prices = [
                [f"{position['exchange']}:{position['tradingsymbol']}", position["last_price"]]
                for position in message["data"]["positions"]
            ]
            result["messages"].append([received_at, as_of, prices])

        result["closed"] = await socket_clients.received_until(connection, stop, keep)

    tasks = [asyncio.create_task(follow(entry)) for entry in spec["sockets"]]
    await opening.all_opened(tasks)
    # The frames kept while following are the client's own growing heap: no collector pause on the measured
    # path (what is kept is freed when the process ends).
    gc.disable()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    Path(spec["result_path"]).write_text(json.dumps(results))
    print("DONE", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        socket_clients.client_run(client_main(sys.argv[2]))
