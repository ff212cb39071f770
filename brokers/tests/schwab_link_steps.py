"""The Schwab sandbox for end-to-end tests of linking, seed 002's endpoints and token refresh.

Thor talks to the sandbox over real HTTP; the tenant's Schwab app is the one the sandbox knows.
"""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.registry import adapter_for_app
from brokers.sandbox.testing import schwab_authorization_code, start_sandbox, submit_schwab_login
from brokers.services import schwab_market_data_connect

CLIENT_ID, CLIENT_SECRET = "schwab-test-client", "schwab-test-secret"
SPA = "http://localhost:5173"
SPA_CALLBACK = f"{SPA}/schwab/callback"


@pytest.fixture(scope="session")
def shared_schwab_sandbox():
    """One Schwab sandbox for every test of a pytest process; `schwab_sandbox` hands it over fresh."""
    with start_sandbox(
        schwab_apps=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": SPA_CALLBACK}],
        tick_seconds=None,
    ) as running:
        yield running


@pytest.fixture
def schwab_sandbox(shared_schwab_sandbox, settings):
    """The Schwab sandbox in the state it started in (its app, the demo user), with Thor pointed at it."""
    shared_schwab_sandbox.reset()
    settings.THOR_SCHWAB_API_BASE = shared_schwab_sandbox.url
    settings.THOR_SCHWAB_AUTH_BASE = shared_schwab_sandbox.url
    # Every test starts with a full budget and without waiting on one.
    settings.THOR_SCHWAB_RATE_WAIT = 0.0
    return shared_schwab_sandbox


def schwab_app_for(tenant, *, name="Acme Schwab", client_id=CLIENT_ID, secret=CLIENT_SECRET) -> BrokerApp:
    """A tenant's Schwab app, redirecting to the SPA's callback (the sandbox must know the client)."""
    return BrokerApp.objects.create(
        tenant=tenant,
        kind=BrokerKind.SCHWAB,
        name=name,
        api_key=client_id,
        api_secret=secret,
        redirect_uri=SPA_CALLBACK,
    )


@pytest.fixture
def schwab_app(tenant):
    return schwab_app_for(tenant)


def start(client) -> str:
    response = client.get("/api/schwab/oauth/start/")
    assert response.status_code == 200, response.json()
    return response.json()["auth_url"]


def approve(auth_url: str, username="sandbox", password="sandbox") -> dict:
    """Log in on the sandbox's Schwab page; returns the query Schwab sends the SPA page (code, state)."""
    answer = submit_schwab_login(auth_url, username=username, password=password, timeout=5)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == SPA_CALLBACK
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def relay(client, params: dict):
    """What seed 002's /schwab/callback page does: hand Schwab's query to the backend with its JWT."""
    return client.get("/api/schwab/oauth/callback/", params)


def link_schwab(client) -> BrokerConnection:
    response = relay(client, approve(start(client)))
    assert response.status_code == 200, response.json()
    return BrokerConnection.objects.get(pk=response.json()["connection"]["id"])


def schwab_fault(sandbox, **fault) -> None:
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"broker": "schwab", **fault}, timeout=5).raise_for_status()


def clear_faults(sandbox) -> None:
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()


def refresh_calls(sandbox) -> dict:
    return requests.get(f"{sandbox.url}/_sandbox/schwab/refreshes", timeout=5).json()


def sandbox_grants(sandbox, app, count: int, *, access_seconds: float | None = None) -> list[dict]:
    """`count` logins of distinct sandbox users straight into tokens (no login page: many at once), each
    as the sandbox says: its accounts (number, hashValue, type), its customer id and tokens."""
    seed = {"client_id": app.api_key, "count": count}
    if access_seconds is not None:
        seed["access_seconds"] = access_seconds
    response = requests.post(f"{sandbox.url}/_sandbox/schwab/grants", json=seed, timeout=30)
    response.raise_for_status()
    return response.json()


def connection_for_grant(user, app, grant: dict, *, trading_enabled: bool = False) -> BrokerConnection:
    """An active Schwab connection of `user` holding a sandbox grant's tokens; `connection.grant` is the grant."""
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    connection = BrokerConnection.objects.create(
        user=user,
        app=app,
        status=BrokerConnection.Status.ACTIVE,
        broker_user_id=grant["customer_id"],
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        access_expires_at=now + timedelta(seconds=grant["expires_in"]),
        refresh_expires_at=now + timedelta(seconds=grant["refresh_expires_in"]),
        trading_enabled=trading_enabled,
    )
    # The tests read the grant back off the connection: an attribute of this instance only, no model field.
    connection.grant = grant  # type: ignore[attr-defined]
    return connection


def seeded_connections(
    sandbox, app, users, *, access_seconds: float | None = None, trading_enabled: bool = False
) -> list[BrokerConnection]:
    """One active Schwab connection per user, with tokens the sandbox issued (no login page: many at once);
    `connection.grant` is what the sandbox said of that login (its accounts, its grant id)."""
    grants = sandbox_grants(sandbox, app, len(users), access_seconds=access_seconds)
    return [
        connection_for_grant(user, app, grant, trading_enabled=trading_enabled)
        for user, grant in zip(users, grants, strict=True)
    ]


def schwab_market_data_link(sandbox, tenant) -> BrokerConnection:
    """The tenant's Schwab market-data connection at the sandbox (the demo login on the tenant's shared Schwab
    app, under its market-data user), linked as `seed_demo` links the demo tenant's; `sandbox` is the Schwab
    sandbox Thor is pointed at (`schwab_sandbox`)."""
    app = BrokerApp.objects.filter(tenant=tenant, owner=None, kind=BrokerKind.SCHWAB, api_key=CLIENT_ID).first()
    app = app or schwab_app_for(tenant)
    code = schwab_authorization_code(
        adapter_for_app(app).authorization_url("test"), username="sandbox", password="sandbox", timeout=5
    )
    return schwab_market_data_connect(app=app, code=code)
