"""The Schwab sandbox over real HTTP for its own tests: a clock the test moves, the browser's login, and
the token and Trader API calls."""

import base64
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from brokers.sandbox.server import SandboxServer
from brokers.sandbox.testing import SandboxHandle, submit_schwab_login

CLIENT_ID, CLIENT_SECRET = "schwab-test-client", "schwab-test-secret"
CALLBACK = "https://app.acme.test/schwab/callback"


class Clock:
    """The sandbox's time, moved by the test."""

    def __init__(self):
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sandbox(clock):
    server = SandboxServer(
        schwab_apps=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": CALLBACK}],
        tick_seconds=None,
        clock=clock,
    )
    with SandboxHandle(server) as running:
        yield running


def authorize_url(sandbox, **overrides) -> str:
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": CALLBACK,
        "scope": "api",
        "state": "the-state",
        **overrides,
    }
    return f"{sandbox.url}/v1/oauth/authorize?{urlencode(query)}"


def log_in(sandbox, **overrides) -> dict[str, str]:
    """The browser's part: the login form posted; returns the callback's query."""
    answer = submit_schwab_login(authorize_url(sandbox, **overrides), username="sandbox", password="sandbox")
    assert answer.status_code == 302, answer.text
    return {key: values[0] for key, values in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def basic(client_id=CLIENT_ID, secret=CLIENT_SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def token_call(sandbox, form: dict, headers=None):
    return requests.post(f"{sandbox.url}/v1/oauth/token", data=form, headers=basic() if headers is None else headers)


def tokens_for(sandbox) -> dict:
    code = log_in(sandbox)["code"]
    answer = token_call(sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK})
    assert answer.status_code == 200, answer.text
    return answer.json()


def refresh_call(sandbox, refresh_token: str):
    return token_call(sandbox, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def api(sandbox, method: str, path: str, access_token: str, **kwargs):
    headers = {"Authorization": f"Bearer {access_token}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{sandbox.url}{path}", headers=headers, timeout=5, **kwargs)


def pin(sandbox, **prices) -> None:
    answer = requests.post(f"{sandbox.url}/_sandbox/prices", json={f"NASDAQ:{s}": p for s, p in prices.items()})
    assert answer.status_code == 200, answer.text


def fault(sandbox, **spec) -> requests.Response:
    return requests.post(f"{sandbox.url}/_sandbox/faults", json={"broker": "schwab", **spec})


@pytest.fixture
def session(sandbox):
    """A logged-in demo user: tokens, and the hashes of its MARGIN and CASH accounts."""
    tokens = tokens_for(sandbox)
    numbers = api(sandbox, "GET", "/trader/v1/accounts/accountNumbers", tokens["access_token"]).json()
    accounts = api(sandbox, "GET", "/trader/v1/accounts", tokens["access_token"]).json()
    kinds = {item["securitiesAccount"]["accountNumber"]: item["securitiesAccount"]["type"] for item in accounts}
    hashes = {kinds[item["accountNumber"]]: item["hashValue"] for item in numbers}
    return {"tokens": tokens, "access": tokens["access_token"], **hashes}


def equity_order(symbol="AAPL", instruction="BUY", quantity=5, order_type="LIMIT", **prices) -> dict:
    return {
        "session": "NORMAL",
        "duration": "DAY",
        "orderType": order_type,
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [
            {"instruction": instruction, "quantity": quantity, "instrument": {"symbol": symbol, "assetType": "EQUITY"}}
        ],
        **prices,
    }


def place(sandbox, session, account="MARGIN", **order) -> str:
    answer = api(
        sandbox, "POST", f"/trader/v1/accounts/{session[account]}/orders", session["access"], json=equity_order(**order)
    )
    assert answer.status_code == 201, answer.text
    assert answer.content == b""
    return answer.headers["Location"].rsplit("/", 1)[1]


def order_of(sandbox, session, order_id, account="MARGIN") -> dict:
    return api(sandbox, "GET", f"/trader/v1/accounts/{session[account]}/orders/{order_id}", session["access"]).json()
