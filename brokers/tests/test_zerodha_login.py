"""Log in with Zerodha (seeds 003 and 004): the tenant's Kite app as the identity provider, end to end
through the sandbox's Kite login page, sharing the Kite app's one redirect URL with account linking."""

import time
from urllib.parse import urlencode

import pytest
import time_machine
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import TradingAccount
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.sandbox.testing import submit_login
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, CALLBACK, link, sandbox_fault, spa_params
from identity.models import SocialIdentity, Tenant, User
from identity.tests.factories import UserFactory
from identity.tests.social_helpers import OPT_IN_PAGE, SEED_004_KEYS, SPA_PAGE, follow, spa_landing
from thor.tests.browser_pages import assert_login_link_page, opener_kept

pytestmark = pytest.mark.django_db


@pytest.fixture
def kite_app(tenant):
    return BrokerApp.objects.create(
        tenant=tenant, kind=BrokerKind.KITE, api_key=API_KEY, api_secret=API_SECRET, redirect_uri=CALLBACK
    )


def start(client, agent="acme", redirect_uri=OPT_IN_PAGE):
    return client.get(f"/api/{agent}/v1/auth/oauth/zerodha/login?{urlencode({'redirect_uri': redirect_uri})}")


def kite_return(client, user_id="AB1234", **start_kwargs) -> str:
    """Start the login and sign in at the sandbox's Kite page; returns where Kite sends the browser."""
    response = start(client, **start_kwargs)
    assert response.status_code == 302, response.content
    answer = submit_login(response["Location"], user_id=user_id, password="sandbox", timeout=5)
    assert answer.status_code == 302, answer.text
    assert answer.headers["Location"].startswith(CALLBACK)
    return answer.headers["Location"]


def test_a_new_user_logs_in_with_zerodha_and_lands_with_every_seed_004_field(sandbox, kite_app, tenant):
    browser = APIClient()
    response = follow(browser, kite_return(browser))

    query, fragment = spa_landing(response)
    user = User.objects.get(social_identities__provider="zerodha", social_identities__subject="AB1234")
    assert sorted(query) == sorted(SEED_004_KEYS)
    assert query["token_type"] == "Bearer" and query["role"] == "user" and query["expires_in"] == "900"
    assert query["user_id"] == str(user.pk) and query["email"] == "ab1234@sandbox.invalid"
    assert query["marketing_opt_in"] == "true" and query["agent"] == "acme" and query["provider"] == "zerodha"
    assert AccessToken(query["access_token"])["user_id"] == str(user.pk)
    assert fragment == {}
    assert response["Cache-Control"] == "no-store" and response["Referrer-Policy"] == "no-referrer"
    assert user.email == "ab1234@sandbox.invalid" and user.tenant == tenant and not user.has_usable_password()
    # The Kite session is the user's connection, and accounts opened the live account beside the paper one.
    connection = BrokerConnection.objects.get(user=user, app=kite_app)
    assert connection.status == "active" and connection.broker_user_id == "AB1234"
    assert TradingAccount.objects.filter(user=user, mode="live", broker_account_id="AB1234").exists()
    assert TradingAccount.objects.filter(user=user, mode="paper").exists()


def test_the_seed_003_aliases_answer_for_the_logged_in_user(sandbox, kite_app, tenant):
    browser = APIClient()
    query, _ = spa_landing(follow(browser, kite_return(browser)))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {query['access_token']}")
    profile = api.get("/api/user/profile")
    assert profile.status_code == 200 and profile.json()["data"]["user_id"] == "AB1234"


def test_a_returning_zerodha_user_is_the_same_user_with_one_connection(sandbox, kite_app, tenant):
    first = APIClient()
    one, _ = spa_landing(follow(first, kite_return(first)))
    second = APIClient()
    two, _ = spa_landing(follow(second, kite_return(second, redirect_uri=SPA_PAGE)))
    assert one["user_id"] == two["user_id"]
    assert BrokerConnection.objects.filter(broker_user_id="AB1234").count() == 1
    assert SocialIdentity.objects.filter(provider="zerodha").count() == 1


@pytest.mark.parametrize("delivery", ["fragment", "code"])
def test_zerodha_follows_the_tenants_token_delivery(sandbox, kite_app, tenant, delivery):
    Tenant.objects.filter(pk=tenant.pk).update(token_delivery=delivery)
    browser = APIClient()
    query, fragment = spa_landing(follow(browser, kite_return(browser)))
    if delivery == "fragment":
        assert query == {} and fragment["provider"] == "zerodha" and fragment["access_token"]
    else:
        assert sorted(query) == ["agent", "code", "provider"] and fragment == {}
        traded = APIClient().post("/api/auth/exchange", {"code": query["code"]}, format="json")
        assert traded.status_code == 200 and traded.json()["provider"] == "zerodha"
        assert traded.json()["refresh_token"]


def test_the_kite_email_never_joins_an_existing_user(sandbox, kite_app, tenant):
    owner = UserFactory(email="ab1234@sandbox.invalid", tenant=tenant)
    browser = APIClient()
    query, _ = spa_landing(follow(browser, kite_return(browser)))
    assert query == {"error": "email_unverified", "agent": "acme", "provider": "zerodha"}
    assert not BrokerConnection.objects.filter(user=owner).exists()


def test_a_zerodha_callback_finished_in_another_browser_logs_nobody_in(sandbox, kite_app, tenant):
    finished_url = kite_return(APIClient())
    query, _ = spa_landing(follow(APIClient(), finished_url))
    assert query == {"error": "browser_mismatch", "agent": "acme", "provider": "zerodha"}
    assert not BrokerConnection.objects.filter(broker_user_id="AB1234").exists()


def test_a_replayed_zerodha_callback_delivers_no_token(sandbox, kite_app, tenant):
    browser = APIClient()
    response = start(browser)
    cookies = {name: morsel.value for name, morsel in response.cookies.items()}
    finished_url = submit_login(response["Location"], user_id="AB1234", password="sandbox").headers["Location"]
    assert "access_token" in spa_landing(follow(browser, finished_url))[0]
    for name, value in cookies.items():
        browser.cookies[name] = value
    replay = follow(browser, finished_url)
    query, _ = spa_landing(replay)
    assert query["error"] == "state_used" and "access_token" not in query


def test_a_zerodha_login_state_is_for_its_tenant_only(sandbox, kite_app, tenant, other_tenant):
    browser = APIClient()
    finished_url = kite_return(browser)
    response = browser.get(f"/api/globex/v1/auth/oauth/zerodha/callback?{finished_url.split('?', 1)[1]}")
    assert_login_link_page(response)


def test_a_google_state_is_not_a_zerodha_one(sandbox, kite_app, tenant):
    browser = APIClient()
    google = browser.get(f"/api/acme/v1/auth/oauth/google/login?{urlencode({'redirect_uri': SPA_PAGE})}")
    state = google["Location"].split("state=", 1)[1].split("&", 1)[0]
    response = browser.get(f"/api/auth/broker/callback?request_token=x&action=login&status=success&state={state}")
    assert_login_link_page(response)


def test_an_expired_zerodha_login_goes_back_to_its_page_through_the_kite_callback(sandbox, kite_app, tenant):
    browser = APIClient()
    finished_url = kite_return(browser)

    with time_machine.travel(time.time() + 601, tick=False):
        query, _ = spa_landing(follow(browser, finished_url))

    assert query["error"] == "state_expired" and "access_token" not in query
    assert not SocialIdentity.objects.exists()


def test_a_zerodha_login_in_a_popup_keeps_its_opener_at_every_hop(sandbox, kite_app, tenant):
    browser = APIClient()
    started = start(browser)
    finished_url = submit_login(started["Location"], user_id="AB1234", password="sandbox").headers["Location"]
    landed = follow(browser, finished_url)

    assert (started.status_code, landed.status_code) == (302, 302)
    assert opener_kept(started) and opener_kept(landed)


def test_a_denied_kite_login_redirects_with_an_error(sandbox, kite_app, tenant):
    browser = APIClient()
    finished_url = kite_return(browser)
    query, _ = spa_landing(follow(browser, finished_url.replace("status=success", "status=cancelled")))
    assert query["error"] == "denied" and "access_token" not in query


def test_a_failing_kite_session_exchange_redirects_with_an_error(sandbox, kite_app, tenant):
    browser = APIClient()
    finished_url = kite_return(browser)
    sandbox_fault(sandbox, kind="5xx", path="/session/token", count=5)
    query, _ = spa_landing(follow(browser, finished_url))
    assert query["error"] == "exchange_failed"
    assert not User.objects.filter(email="ab1234@sandbox.invalid").exists()


def test_a_kite_timeout_redirects_with_provider_timeout(sandbox, kite_app, tenant, settings):
    settings.THOR_KITE_TIMEOUT = 0.3
    browser = APIClient()
    finished_url = kite_return(browser)
    sandbox_fault(sandbox, kind="latency", path="/session/token", ms=1500, count=5)
    query, _ = spa_landing(follow(browser, finished_url))
    assert query["error"] == "provider_timeout"
    assert "access_token" not in query


def test_a_tenant_without_a_kite_app_has_no_zerodha_login(sandbox, tenant):
    assert start(APIClient()).status_code == 404


@pytest.mark.parametrize(
    "redirect_uri", ["https://evil.example/", "http://localhost:5173@evil.example/", "//evil.example/"]
)
def test_a_zerodha_login_to_another_origin_is_refused(sandbox, kite_app, tenant, redirect_uri):
    response = start(APIClient(), redirect_uri=redirect_uri)
    assert response.status_code == 400 and "Location" not in response


def test_account_linking_still_works_on_the_same_callback(sandbox, kite_app, alice, alice_client):
    account = link(alice_client)
    assert account.user == alice


def test_a_linking_callback_is_not_taken_for_a_login(sandbox, kite_app, alice, alice_client):
    response = alice_client.post(
        "/api/auth/broker/test-oauth",
        {"api_key": API_KEY, "api_secret": API_SECRET, "frontend_url": "http://localhost:5173"},
        format="json",
    )
    answer = submit_login(response.json()["oauth_url"], user_id="CD5678", password="sandbox")
    result = follow(APIClient(), answer.headers["Location"])
    assert spa_params(result)["status"] == "success"
    assert not SocialIdentity.objects.exists()
