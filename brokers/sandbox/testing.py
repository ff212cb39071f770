"""Run the sandbox in a background thread, for pytest fixtures, end-to-end tests and benchmarks.

Use it as `with start_sandbox(apps=[app]) as sandbox:` and point a client at `sandbox.url`, e.g.
`KiteConnect(api_key=app["api_key"], root=sandbox.url)`.
"""

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

import requests

from .kite_models import KiteApp
from .server import SandboxServer, SandboxState
from .state import Fault


class SandboxHandle:
    def __init__(self, server: SandboxServer):
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, name="broker-sandbox", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> SandboxState:
        return self.server.state

    def reset(self) -> None:
        """Forget everything tests did (sessions, orders, pinned prices, faults, counts, identity grants)."""
        self.server.reset()

    def stop(self) -> None:
        self.server.shutdown()
        self._thread.join(timeout=5)

    def __enter__(self) -> "SandboxHandle":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_sandbox(
    apps: Iterable[KiteApp | Mapping] = (),
    port: int = 0,
    host: str = "127.0.0.1",
    faults: Iterable[Fault | Mapping] = (),
    tick_seconds: float | None = 1.0,
    idp_clients: Mapping[str, Iterable[Mapping]] | None = None,
    schwab_apps: Iterable[Mapping] = (),
    sleep: Callable[[float], None] = time.sleep,
    full_universe: bool = False,
    ticker_seconds: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> SandboxHandle:
    """Start a sandbox on `port` (0 picks a free one) and return once it accepts connections.

    `idp_clients` registers OAuth clients at its identity providers: {"google": [{"client_id", ...}]};
    `schwab_apps` Schwab apps: [{"client_id", "client_secret", "redirect_uri"}]; `sleep` how a latency
    fault waits; `full_universe` lists the whole generated market (about 100,000 instruments) instead of
    the fixtures and the NIFTY/BANKNIFTY chain; `ticker_seconds` how often Kite's ticker (`/ws`) sends
    ticks; `clock` the market's time (a test freezes it to compare a tick with a quote).
    """
    server = SandboxServer(
        apps=apps,
        faults=faults,
        host=host,
        port=port,
        tick_seconds=tick_seconds,
        idp_clients=idp_clients,
        schwab_apps=schwab_apps,
        sleep=sleep,
        full_universe=full_universe,
        ticker_seconds=ticker_seconds,
        clock=clock,
    )
    return SandboxHandle(server)


def submit_login(oauth_url: str, *, user_id: str, password: str, timeout: float = 10):
    """What a browser does on the sandbox's Kite login page: post the form the login URL opens.

    Returns the sandbox's answer unfollowed; on success a 302 to the app's redirect URL.
    """
    query = parse_qs(urlsplit(oauth_url).query)
    return requests.post(
        oauth_url.split("?")[0],
        data={
            "api_key": query["api_key"][0],
            "redirect_params": query["redirect_params"][0],
            "user_id": user_id,
            "password": password,
        },
        allow_redirects=False,
        timeout=timeout,
    )


def kite_request_token(root: str, *, api_key: str, user_id: str, password: str, timeout: float = 10) -> str:
    """A request token for `api_key` from the sandbox's Kite login (what a browser gets back at the app's
    redirect URL): how the development seed and the tests link a market-data session without a browser."""
    answer = requests.post(
        f"{root}/connect/login",
        data={"api_key": api_key, "redirect_params": "", "user_id": user_id, "password": password},
        allow_redirects=False,
        timeout=timeout,
    )
    token = parse_qs(urlsplit(answer.headers.get("Location", "")).query).get("request_token", [""])[0]
    if answer.status_code != 302 or not token:
        raise RuntimeError(f"The sandbox's Kite login answered {answer.status_code}, without a request token")
    return token


def submit_schwab_login(authorize_url: str, *, username: str, password: str, timeout: float = 10):
    """What a browser does on the sandbox's Schwab login page: post its form. Returns the answer
    unfollowed; on success a 302 to the app's redirect URI with `code`, `session` and `state`."""
    query = parse_qs(urlsplit(authorize_url).query)
    return requests.post(
        authorize_url.split("?")[0],
        data={
            "client_id": query.get("client_id", [""])[0],
            "redirect_uri": query.get("redirect_uri", [""])[0],
            "state": query.get("state", [""])[0],
            "username": username,
            "password": password,
        },
        allow_redirects=False,
        timeout=timeout,
    )


def schwab_authorization_code(authorize_url: str, *, username: str, password: str, timeout: float = 10) -> str:
    """An authorization code from the sandbox's Schwab login for the app of `authorize_url` (what a browser
    gets back at the app's redirect URI): how the development seed and the tests link a market-data login
    without a browser."""
    answer = submit_schwab_login(authorize_url, username=username, password=password, timeout=timeout)
    code = parse_qs(urlsplit(answer.headers.get("Location", "")).query).get("code", [""])[0]
    if answer.status_code != 302 or not code:
        raise RuntimeError(f"The sandbox's Schwab login answered {answer.status_code}, without a code")
    return code


def sandbox_is_up(url: str, *, timeout: float = 10) -> bool:
    """Does a sandbox started elsewhere (its own process) answer yet? Its control surface says."""
    try:
        return requests.get(f"{url}/_sandbox/stats", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False
