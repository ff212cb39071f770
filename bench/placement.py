"""What Thor adds to a live placement: the same LIMIT order straight at the broker and through Thor, in one run.

Run: .venv/bin/python bench/placement.py [--orders 300 --rate 8 --warm-up 20 --workers 2]

The bench world (bench/harness.py) with Thor under granian, its own database `thor_bench_placement`
and Redis DB 7, and two live accounts of one user on the broker sandbox: a Kite account (the harness's
browser-style link) and a Schwab account (the tenant's Schwab app, linked the way seed 002's page does).
For each broker, N orders straight at the sandbox and N through `POST /api/accounts/{id}/orders`, taken
in turns (straight, Thor, straight, ...) so both see the same machine:

- Kite straight: the official client, `kiteconnect.KiteConnect(api_key, root=<sandbox>)`, one instance
  (its keep-alive session) with an access token of its own login (another sandbox user, another book);
- Schwab straight: `requests` POSTing Schwab's order JSON to the sandbox's order endpoint, one session;
- Thor: one keep-alive `requests` session, a fresh Idempotency-Key on every order.

Every order is a buy limit far below the market, so it rests and the sandbox's matching has nothing to
fill. The orders are paced at `--rate` orders a second in all (under the broker's 10/s, and Thor's own
order throttle and Schwab budgets are raised for the bench tenant), so no rate-bucket wait is measured.
The first `--warm-up` orders of each kind are not counted. Figures: p50 and p99 of each, Thor minus
straight (what Thor adds) against issue 19's target, and the sandbox calls each phase made (one
placement call per order expected). A measurement, not a test: it exits 0 whether the target is met or not.
"""

import argparse
import os
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from harness import (
    KITE_API_KEY,
    KITE_API_SECRET,
    PYTHON,
    REPO,
    SPA,
    Processes,
    World,
    exit_cleanly_on_sigterm,
    live_world,
)
from kiteconnect import KiteConnect
from load import percentile, verdict
from ticks_world import kite_access_token, market_data_session_create

from brokers.sandbox.testing import submit_login, submit_schwab_login

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/thor_bench_placement"
REDIS_URL = "redis://127.0.0.1:6379/7"
# Issue 19's target for what Thor adds over the broker's own round trip.
TARGET_ADDED_P50_MS = 5.0
TARGET_ADDED_P99_MS = 15.0
# The sandbox's demo Schwab app (run_broker_sandbox registers it) and its demo login.
SCHWAB_CLIENT_ID, SCHWAB_CLIENT_SECRET = "thor_demo_schwab_client", "thor_demo_schwab_secret"
SCHWAB_REDIRECT = f"{SPA}/schwab/callback"
# The straight Kite client logs in as the sandbox's second demo user: its own book, the same app.
DIRECT_KITE_USER, DIRECT_KITE_PASSWORD = "CD5678", "sandbox"
# Below INFY (about 1500) so it rests, and within its circuit (1350 to 1650): outside it Thor and the sandbox refuse it.
KITE_ORDER = {"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 1, "price": 1360}
SCHWAB_ORDER = {"exchange": "NASDAQ", "tradingsymbol": "AAPL", "quantity": 1, "price": 50}


@dataclass
class Series:
    """One way of placing: its latencies (seconds) and its answers' statuses."""

    name: str
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    def p(self, percent: float) -> float:
        return percentile(sorted(self.latencies), percent) * 1000


# The bench user's own limits out of the way: a throttled order is not a placement measured.
UNTHROTTLED = {
    "THOR_ORDER_RATE": "100000/min",
    "THOR_SCHWAB_REQUESTS_PER_MINUTE": "100000",
    "THOR_SCHWAB_ORDERS_PER_MINUTE": "100000",
    "THOR_SCHWAB_ORDERS_PER_DAY": "1000000",
}


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _schwab_app_create(world: World) -> None:
    """The tenant's Schwab app, as an operator adds it in the admin."""
    code = (
        "from brokers.models import BrokerApp, BrokerKind; from identity.models import Tenant; "
        "BrokerApp.objects.create(tenant=Tenant.objects.get(slug='bench'), kind=BrokerKind.SCHWAB, "
        f"name='Bench Schwab', api_key='{SCHWAB_CLIENT_ID}', api_secret='{SCHWAB_CLIENT_SECRET}', "
        f"redirect_uri='{SCHWAB_REDIRECT}')"
    )
    subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code], cwd=REPO, env=world.env, check=True, stdout=subprocess.DEVNULL
    )


def _link_schwab(world: World) -> int:
    """Seed 002's flow over HTTP: Thor's start, the sandbox's login form, the SPA relaying the code."""
    _schwab_app_create(world)
    start = requests.get(
        f"{world.thor_url}/api/schwab/oauth/start/",
        params={"frontend_url": SPA},
        headers=_bearer(world.token),
        timeout=10,
    )
    start.raise_for_status()
    login = submit_schwab_login(start.json()["auth_url"], username="sandbox", password="sandbox")
    if login.status_code != 302:
        raise RuntimeError(f"Sandbox Schwab login answered {login.status_code}: {login.text[:200]}")
    query = {key: values[0] for key, values in parse_qs(urlsplit(login.headers["Location"]).query).items()}
    callback = requests.get(
        f"{world.thor_url}/api/schwab/oauth/callback/", params=query, headers=_bearer(world.token), timeout=30
    )
    callback.raise_for_status()
    accounts = requests.get(f"{world.thor_url}/api/accounts", headers=_bearer(world.token), timeout=10).json()
    return next(account["id"] for account in accounts if account["mode"] == "live" and account["broker"] == "schwab")


def _direct_kite(world: World) -> KiteConnect:
    """The official client with a session of its own, logged in on the sandbox as a browser would."""
    query = urlencode({"v": 3, "api_key": KITE_API_KEY, "redirect_params": "state=bench"})
    login = submit_login(
        f"{world.sandbox_url}/connect/login?{query}", user_id=DIRECT_KITE_USER, password=DIRECT_KITE_PASSWORD
    )
    request_token = parse_qs(urlsplit(login.headers["Location"]).query)["request_token"][0]
    kite = KiteConnect(api_key=KITE_API_KEY, root=world.sandbox_url)
    kite.set_access_token(kite.generate_session(request_token, api_secret=KITE_API_SECRET)["access_token"])
    return kite


def _direct_schwab(world: World) -> tuple[requests.Session, str]:
    """A session with a login of its own (seeded on the sandbox) and the URL of its first account's orders."""
    seeded = requests.post(
        f"{world.sandbox_url}/_sandbox/schwab/grants", json={"client_id": SCHWAB_CLIENT_ID, "count": 1}, timeout=10
    )
    seeded.raise_for_status()
    session = requests.Session()
    session.headers.update(_bearer(seeded.json()[0]["access_token"]))
    numbers = session.get(f"{world.sandbox_url}/trader/v1/accounts/accountNumbers", timeout=10)
    numbers.raise_for_status()
    return session, f"{world.sandbox_url}/trader/v1/accounts/{numbers.json()[0]['hashValue']}/orders"


def _thor_body(order: dict, price: float) -> dict:
    return {
        "tradingsymbol": order["tradingsymbol"],
        "exchange": order["exchange"],
        "transaction_type": "BUY",
        "quantity": order["quantity"],
        "order_type": "LIMIT",
        "product": "CNC",
        "price": f"{price:.2f}",
    }


def _schwab_body(price: float) -> dict:
    return {
        "session": "NORMAL",
        "duration": "DAY",
        "orderType": "LIMIT",
        "orderStrategyType": "SINGLE",
        "price": round(price, 2),
        "orderLegCollection": [
            {
                "instruction": "BUY",
                "quantity": SCHWAB_ORDER["quantity"],
                "instrument": {"symbol": SCHWAB_ORDER["tradingsymbol"], "assetType": "EQUITY"},
            }
        ],
    }


def _timed(series: Series, place: Callable[[], object], *, counted: bool) -> None:
    started = time.perf_counter()
    try:
        status = place()
    except Exception as error:  # a refused straight order: counted as what it is, not timed
        series.statuses[type(error).__name__] += 1
        return
    elapsed = time.perf_counter() - started
    series.statuses[status] += 1
    if counted:
        series.latencies.append(elapsed)


def _sandbox_calls(world: World) -> Counter:
    """The sandbox's calls so far by method and path, Schwab's account hashes as {hash}."""
    calls = Counter()
    for path, count in requests.get(f"{world.sandbox_url}/_sandbox/stats", timeout=10).json()["by_path"].items():
        calls[re.sub(r"/accounts/[0-9A-F]{16,}", "/accounts/{hash}", path)] += count
    return calls


def measure(world: World, pairs: list[tuple[Series, Callable]], *, orders: int, warm_up: int, rate: float) -> Counter:
    """Each placer `orders + warm_up` times, in turns, one order every 1/rate s; the sandbox calls made."""
    before = _sandbox_calls(world)
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for index in range(warm_up + orders):
        for series, place in pairs:
            next_at += interval
            _timed(series, lambda place=place, index=index: place(index), counted=index >= warm_up)
            time.sleep(max(0.0, next_at - time.perf_counter()))
    return _sandbox_calls(world) - before


def _thor_placer(world: World, account_id: int, order: dict) -> Callable[[int], int]:
    session = requests.Session()
    session.headers.update(_bearer(world.token))
    url = f"{world.thor_url}/api/accounts/{account_id}/orders"

    def place(index: int) -> int:
        # A different price on every order: no two orders in the book alike.
        body = _thor_body(order, order["price"] + index * 0.05)
        response = session.post(url, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=30)
        if response.status_code != 201:
            print(f"  Thor answered {response.status_code}: {response.text[:300]}")
        return response.status_code

    return place


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300, help="counted orders of each kind")
    parser.add_argument("--warm-up", type=int, default=20, help="orders of each kind placed first and not counted")
    parser.add_argument("--rate", type=float, default=8.0, help="orders a second, all kinds together (< 10)")
    parser.add_argument("--workers", type=int, default=2, help="granian workers")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()

    with Processes() as processes:
        print(f"Setting up: database, sandbox, Thor (granian); logs in {processes.log_dir}")
        world = live_world(
            processes,
            workers=args.workers,
            fresh_seconds=60.0,
            server="granian",
            database_url=DATABASE_URL,
            redis_url=REDIS_URL,
            **UNTHROTTLED,
            THOR_SANDBOX_SCHWAB_CLIENT_ID=SCHWAB_CLIENT_ID,
            THOR_SANDBOX_SCHWAB_CLIENT_SECRET=SCHWAB_CLIENT_SECRET,
            THOR_SANDBOX_SCHWAB_REDIRECT_URL=SCHWAB_REDIRECT,
        )
        schwab_account = _link_schwab(world)
        kite = _direct_kite(world)
        # The tenant's market-data session, as production has one: a live LIMIT order's price band is checked
        # against the quote service's quote through it (without one every order would go on unchecked).
        market_data_session_create(
            world.env,
            account_id=world.account_id,
            access_token=kite_access_token(world.sandbox_url, DIRECT_KITE_USER),
            kite_user=DIRECT_KITE_USER,
        )
        schwab_session, schwab_orders_url = _direct_schwab(world)
        load_before = os.getloadavg()[0]

        def kite_direct(index: int) -> str:
            kite.place_order(
                variety="regular",
                exchange=KITE_ORDER["exchange"],
                tradingsymbol=KITE_ORDER["tradingsymbol"],
                transaction_type="BUY",
                quantity=KITE_ORDER["quantity"],
                product="CNC",
                order_type="LIMIT",
                price=KITE_ORDER["price"] + index * 0.05,
            )
            return "ok"

        def schwab_direct(index: int) -> int:
            response = schwab_session.post(
                schwab_orders_url, json=_schwab_body(SCHWAB_ORDER["price"] + index * 0.01), timeout=30
            )
            return response.status_code

        series = {name: Series(name) for name in ("kite_direct", "kite_thor", "schwab_direct", "schwab_thor")}
        calls = {}
        total = args.orders + args.warm_up
        print(f"Kite: {total} orders straight and {total} through Thor, {args.rate:g} orders/s in all ...")
        calls["kite"] = measure(
            world,
            [
                (series["kite_direct"], kite_direct),
                (series["kite_thor"], _thor_placer(world, world.account_id, KITE_ORDER)),
            ],
            orders=args.orders,
            warm_up=args.warm_up,
            rate=args.rate,
        )
        print(f"Schwab: {total} orders straight and {total} through Thor, {args.rate:g} orders/s in all ...")
        calls["schwab"] = measure(
            world,
            [
                (series["schwab_direct"], schwab_direct),
                (series["schwab_thor"], _thor_placer(world, schwab_account, SCHWAB_ORDER)),
            ],
            orders=args.orders,
            warm_up=args.warm_up,
            rate=args.rate,
        )
    report(series, calls, args, (load_before, os.getloadavg()[0]))


def report(series: dict[str, Series], calls: dict[str, Counter], args, load: tuple[float, float]) -> None:
    print()
    print(
        f"Live LIMIT placements, {args.orders} counted of each kind after {args.warm_up} not counted, "
        f"{args.rate:g} orders/s in all; Thor under granian ({args.workers} workers), PostgreSQL, Redis."
    )
    print(
        f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} when the orders began and {load[1]:.1f} "
        "when they ended (other work on the machine lengthens Thor's many round trips far more than one HTTP call)."
    )
    print(f"  {'placed':<40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  answers")
    labels = {
        "kite_direct": "Kite straight (kiteconnect)",
        "kite_thor": "Kite through Thor",
        "schwab_direct": "Schwab straight (requests)",
        "schwab_thor": "Schwab through Thor",
    }
    for name, label in labels.items():
        one = series[name]
        answers = ", ".join(f"{status}: {count}" for status, count in sorted(one.statuses.items(), key=str))
        print(f"  {label:<40} {one.p(50):8.1f} {one.p(99):8.1f} {one.p(100):8.1f}  {answers}")
    print()
    print("Sandbox calls in each phase (straight and Thor together):")
    for broker, counted in calls.items():
        shown = ", ".join(
            f"{path}: {count}" for path, count in sorted(counted.items()) if "/_sandbox/stats" not in path
        )
        print(f"  {broker}: {shown}")
    print()
    print(
        f"What Thor adds (through Thor minus straight), target p50 <= {TARGET_ADDED_P50_MS:g} ms, p99 <= "
        f"{TARGET_ADDED_P99_MS:g} ms:"
    )
    for broker in ("kite", "schwab"):
        direct, thor = series[f"{broker}_direct"], series[f"{broker}_thor"]
        added50, added99 = thor.p(50) - direct.p(50), thor.p(99) - direct.p(99)
        print(
            f"  {broker:<7} p50 +{added50:5.1f} ms: {verdict(added50 <= TARGET_ADDED_P50_MS)}   "
            f"p99 +{added99:5.1f} ms: {verdict(added99 <= TARGET_ADDED_P99_MS)}"
        )
    answered = all(set(series[name].statuses) <= {"ok", 201} for name in series)
    print(f"  every order placed (201 from Thor, an order id straight): {verdict(answered)}")


if __name__ == "__main__":
    main()
