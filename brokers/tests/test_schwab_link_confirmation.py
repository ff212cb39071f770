"""Schwab links honour the tenant's `broker_link_confirmation` as Kite's do, over the Schwab sandbox.

The threat: Alice starts a Schwab link and forwards the login URL to Bob; Bob logs in to Schwab and his
browser is sent straight to Thor's backend callback, with no Bearer. Without confirmation that would
link Bob's Schwab accounts to Alice. With it the link is parked until the user who started it confirms
it with her own Bearer (`POST /api/brokers/connections/confirm`), as the Kite flow does.
"""

from urllib.parse import parse_qs, urlsplit

import pytest
from django_redis import get_redis_connection

from accounts.models import TradingAccount
from brokers.models import BrokerConnection
from brokers.tests import schwab_link_steps
from brokers.tests.schwab_link_steps import SPA, approve, relay, start
from conftest import client_for

pytestmark = pytest.mark.django_db

schwab_sandbox = schwab_link_steps.schwab_sandbox
schwab_app = schwab_link_steps.schwab_app


@pytest.fixture(autouse=True)
def confirming_tenant(tenant):
    tenant.broker_link_confirmation = True
    tenant.save()


def finished_by_a_browser(params: dict):
    """Schwab sent a browser (anyone's, no Bearer) straight to the backend callback."""
    return client_for().get("/api/schwab/oauth/callback/", params, HTTP_ACCEPT="text/html")


def landing(response) -> dict:
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{SPA}/"
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def confirm(client, code: str):
    return client.post("/api/brokers/connections/confirm", {"code": code}, format="json")


def live_accounts():
    return TradingAccount.objects.filter(mode="live")


def test_a_browser_without_the_users_bearer_parks_the_link(alice_client, schwab_sandbox, schwab_app):
    params = landing(finished_by_a_browser(approve(start(alice_client))))

    assert params["broker"] == "schwab" and params["status"] == "confirm" and params["code"]
    assert not BrokerConnection.objects.filter(status="active").exists()
    assert not live_accounts().exists()


def test_the_user_who_started_confirms_and_gets_every_account_of_the_login(
    alice, alice_client, schwab_sandbox, schwab_app
):
    code = landing(finished_by_a_browser(approve(start(alice_client))))["code"]

    response = confirm(alice_client, code)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["broker"] == "schwab" and body["status"] == "active" and "access_token" not in body
    accounts = list(live_accounts())
    assert len(accounts) == 2 and {account.user for account in accounts} == {alice}
    assert all(len(account.broker_account_id) == 64 and account.account_number.isdigit() for account in accounts)
    assert alice_client.get("/api/schwab/account/summary/").status_code == 200


def test_a_forwarded_link_finished_by_someone_else_never_links_to_the_sender(
    alice_client, bob_client, schwab_sandbox, schwab_app
):
    # Alice's login URL, finished by Bob at Schwab; his browser lands at the backend callback.
    params = landing(finished_by_a_browser(approve(start(alice_client))))

    assert params["status"] == "confirm" and "connected" not in params.values()
    assert confirm(bob_client, params["code"]).status_code == 404
    assert not live_accounts().exists()
    assert not BrokerConnection.objects.filter(status="active").exists()


def test_a_code_works_once(alice_client, schwab_sandbox, schwab_app):
    code = landing(finished_by_a_browser(approve(start(alice_client))))["code"]
    assert confirm(alice_client, code).status_code == 200

    assert confirm(alice_client, code).status_code == 404
    assert live_accounts().count() == 2


def test_a_relay_with_the_starting_users_bearer_is_its_own_confirmation(alice_client, schwab_sandbox, schwab_app):
    response = relay(alice_client, approve(start(alice_client)))

    assert response.status_code == 200, response.json()
    assert response.json()["success"] is True and response.json()["connection"]["status"] == "active"
    assert live_accounts().count() == 2


def test_a_relay_by_another_user_is_refused_and_parks_nothing(alice_client, bob_client, schwab_sandbox, schwab_app):
    response = relay(bob_client, approve(start(alice_client)))

    assert response.status_code == 400 and response.json()["code"] == "state_invalid"
    assert not live_accounts().exists()


def test_without_the_flag_a_browser_links_at_once(tenant, alice_client, schwab_sandbox, schwab_app):
    tenant.broker_link_confirmation = False
    tenant.save()

    params = landing(finished_by_a_browser(approve(start(alice_client))))

    assert params == {"broker": "schwab", "status": "connected"}
    assert live_accounts().count() == 2


def test_the_parked_session_is_never_in_the_cache_in_clear(alice_client, schwab_sandbox, schwab_app):
    code = landing(finished_by_a_browser(approve(start(alice_client))))["code"]
    redis = get_redis_connection("default")
    cached = b"".join(redis.get(key) or b"" for key in redis.scan_iter() if redis.type(key) == b"string")

    confirm(alice_client, code)
    connection = BrokerConnection.objects.get(status="active")

    assert cached and connection.access_token and connection.refresh_token
    assert connection.access_token.encode() not in cached and connection.refresh_token.encode() not in cached
