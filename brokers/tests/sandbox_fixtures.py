"""The broker sandbox for end-to-end tests, and the browser's way through a Kite login.

The root conftest registers this module as a plugin, so every test can ask for `sandbox`.
Nothing in Thor is mocked: Thor's test client talks to the sandbox over real HTTP.
"""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from accounts.models import TradingAccount
from brokers.models import BrokerApp, BrokerConnection
from brokers.sandbox.testing import kite_request_token, start_sandbox, submit_login
from brokers.services import market_data_connect
from conftest import client_for

API_KEY, API_SECRET = "sandboxkey01", "sandboxsecret01"
SPA = "http://localhost:5173"
CALLBACK = "http://testserver/api/auth/broker/callback"
# The OAuth clients the sandbox's Google- and Discord-like providers know, and Thor uses by default.
IDP_CLIENTS = {
    "google": {"client_id": "test-google-client", "client_secret": "test-google-secret"},
    "discord": {"client_id": "test-discord-client", "client_secret": "test-discord-secret"},
}


@pytest.fixture(scope="session")
def shared_sandbox():
    """One sandbox for every test of a pytest process (an xdist worker): starting one each test cost more
    than most tests. Use `sandbox`, which hands it over in the state it started in."""
    with start_sandbox(
        apps=[{"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": CALLBACK}],
        tick_seconds=None,
        idp_clients={provider: [client] for provider, client in IDP_CLIENTS.items()},
    ) as running:
        yield running


@pytest.fixture
def sandbox(shared_sandbox, settings):
    """A sandbox whose prices move only when a test pins them (no ticker), with Thor pointed at it: as
    fresh as a new one (no sessions, orders, pins, faults, counts, later apps or identity grants)."""
    shared_sandbox.reset()
    settings.THOR_KITE_API_ROOT = shared_sandbox.url
    settings.THOR_KITE_LOGIN_URL = f"{shared_sandbox.url}/connect/login"
    settings.THOR_GOOGLE_DISCOVERY_URL = f"{shared_sandbox.url}/google/.well-known/openid-configuration"
    settings.THOR_DISCORD_API_BASE = f"{shared_sandbox.url}/discord"
    settings.THOR_SOCIAL_DEFAULT_APPS = IDP_CLIENTS
    return shared_sandbox


def start(client, frontend_url=SPA) -> str:
    """Seed 000's test-oauth with the sandbox app; returns the Kite login URL."""
    response = client.post(
        "/api/auth/broker/test-oauth",
        {"api_key": API_KEY, "api_secret": API_SECRET, "frontend_url": frontend_url},
        format="json",
    )
    assert response.status_code == 200, response.json()
    return response.json()["oauth_url"]


def log_in_at_kite(oauth_url: str, user_id="AB1234", password="sandbox") -> str:
    """What the browser does at Kite: open the login page, submit it; returns the redirect Location."""
    page = requests.get(oauth_url, timeout=5)
    assert page.status_code == 200 and "<form" in page.text
    answer = submit_login(oauth_url, user_id=user_id, password=password, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def follow(location: str):
    """Hand the sandbox's redirect to Thor, as the browser would."""
    assert location.startswith(CALLBACK)
    parts = urlsplit(location)
    return client_for().get(f"{parts.path}?{parts.query}")


def spa_params(response) -> dict:
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{SPA}/broker-callback"
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def link(client, user_id="AB1234") -> TradingAccount:
    """The whole Kite login for the client's user; returns the live account it leaves behind."""
    response = follow(log_in_at_kite(start(client), user_id=user_id))
    assert spa_params(response)["status"] == "success"
    return TradingAccount.objects.get(mode="live", broker_account_id=user_id)


def sandbox_fault(sandbox, **fault) -> None:
    """Tell the sandbox's Kite to fail: kind latency | 429 | 5xx | token_expired | drop, path, count, ms."""
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"broker": "kite", **fault}, timeout=5).raise_for_status()


def sandbox_calls(sandbox, method_and_path: str) -> int:
    """How many calls the sandbox answered (or dropped) on "METHOD /path" since it started."""
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()
    return stats["by_path"].get(method_and_path, 0)


def market_data_link(sandbox, tenant, user_id="AB1234") -> BrokerConnection:
    """The tenant's market-data connection at the sandbox's Kite (a session on the tenant's shared Kite app), linked
    as `seed_demo` links the demo tenant's."""
    app, _ = BrokerApp.objects.get_or_create(
        tenant=tenant, owner=None, kind="kite", api_key=API_KEY, defaults={"api_secret": API_SECRET}
    )
    token = kite_request_token(sandbox.url, api_key=API_KEY, user_id=user_id, password="sandbox")
    return market_data_connect(app=app, request_token=token)


@pytest.fixture
def market_data(sandbox, tenant, settings) -> BrokerConnection:
    """Tenant acme's market-data connection at the sandbox, and its paper accounts priced through it (the quote
    service, as in production and in `make run`)."""
    settings.THOR_PAPER_PRICE_SOURCE = "kite"
    return market_data_link(sandbox, tenant)
