"""Seed 004 social login through the sandbox's Google- and Discord-like providers, over real HTTP."""

from datetime import timedelta

import pytest
import requests
import time_machine
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import TradingAccount
from brokers.sandbox.idp import IdpClient
from identity.models import SocialApp, SocialIdentity, Tenant, User
from identity.tests.factories import UserFactory
from identity.tests.social_helpers import (
    SEED_004_KEYS,
    SPA_PAGE,
    follow,
    log_in,
    provider_return,
    sign_in_at_provider,
    spa_landing,
    start,
)
from thor.tests.browser_pages import assert_login_link_page, opener_kept

pytestmark = pytest.mark.django_db


def assert_no_token(response):
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert "access_token" not in response["Location"] and "code=" not in response["Location"]


def assert_seed_004_fields(fields: dict, *, user: User, email: str, provider: str, opt_in: str):
    assert sorted(fields) == sorted(SEED_004_KEYS)
    assert fields["token_type"] == "Bearer"
    assert fields["role"] == "user"
    assert fields["user_id"] == str(user.pk)
    assert fields["expires_in"] == "900"
    assert fields["email"] == email
    assert fields["marketing_opt_in"] == opt_in
    assert fields["agent"] == user.tenant.slug
    assert fields["provider"] == provider
    token = AccessToken(fields["access_token"])
    assert token["user_id"] == str(user.pk) and token["tenant"] == user.tenant.slug


# --- The happy paths, per provider and delivery -------------------------------------------------


@pytest.mark.parametrize("provider", ["google", "discord"])
def test_a_new_user_lands_on_the_spa_page_with_every_seed_004_field_in_the_query(sandbox, tenant, provider):
    response = log_in(APIClient(), provider, email="new.user@example.com")

    query, fragment = spa_landing(response)
    user = User.objects.get(email="new.user@example.com")
    assert_seed_004_fields(query, user=user, email="new.user@example.com", provider=provider, opt_in="true")
    assert fragment == {}
    assert response["Cache-Control"] == "no-store" and response["Referrer-Policy"] == "no-referrer"
    assert user.tenant == tenant and user.marketing_opt_in is True and not user.has_usable_password()
    identity = SocialIdentity.objects.get(user=user)
    assert identity.provider == provider and identity.email_verified and identity.email == "new.user@example.com"
    # Like any other sign-up, the new user holds the primary paper account.
    assert TradingAccount.objects.filter(user=user, mode="paper", currency=tenant.currency).exists()


def test_the_access_token_works_on_the_api(sandbox, tenant):
    query, _ = spa_landing(log_in(APIClient(), "google"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {query['access_token']}")
    assert client.get("/api/auth/identities/").status_code == 200


def test_fragment_delivery_puts_the_same_fields_after_the_hash(sandbox, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(token_delivery="fragment")
    response = log_in(APIClient(), "discord", email="frag@example.com")

    query, fragment = spa_landing(response)
    assert query == {}
    assert_seed_004_fields(
        fragment,
        user=User.objects.get(email="frag@example.com"),
        email="frag@example.com",
        provider="discord",
        opt_in="true",
    )


def test_code_delivery_sends_a_one_time_code_traded_once_for_the_fields_and_a_refresh_token(sandbox, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(token_delivery="code")
    response = log_in(APIClient(), "google", email="code@example.com")

    query, fragment = spa_landing(response)
    assert sorted(query) == ["agent", "code", "provider"] and fragment == {}
    assert query["agent"] == "acme" and query["provider"] == "google"
    spa = APIClient()
    traded = spa.post("/api/auth/exchange", {"code": query["code"]}, format="json")
    assert traded.status_code == 200 and traded["Cache-Control"] == "no-store"
    body = traded.json()
    user = User.objects.get(email="code@example.com")
    fields = {key: value for key, value in body.items() if key != "refresh_token"}
    assert_seed_004_fields(fields, user=user, email="code@example.com", provider="google", opt_in="true")
    assert spa.post("/api/auth/token/refresh", {"refresh": body["refresh_token"]}, format="json").status_code == 200

    again = spa.post("/api/auth/exchange", {"code": query["code"]}, format="json")
    assert again.status_code == 404 and again.json()["code"] == "not_found"


def test_a_one_time_code_is_worthless_after_sixty_seconds(sandbox, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(token_delivery="code")
    query, _ = spa_landing(log_in(APIClient(), "google", email="slow@example.com"))
    with time_machine.travel(timedelta(seconds=61)):
        expired = APIClient().post("/api/auth/exchange", {"code": query["code"]}, format="json")
    assert expired.status_code == 404


def test_a_one_time_code_still_works_at_fifty_nine_seconds(sandbox, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(token_delivery="code")
    query, _ = spa_landing(log_in(APIClient(), "google", email="quick@example.com"))
    with time_machine.travel(timedelta(seconds=59)):
        traded = APIClient().post("/api/auth/exchange", {"code": query["code"]}, format="json")
    assert traded.status_code == 200


def test_an_unknown_or_blank_code_is_refused(db):
    assert APIClient().post("/api/auth/exchange", {"code": "made-up"}, format="json").status_code == 404
    assert APIClient().post("/api/auth/exchange", {}, format="json").status_code == 400


def test_marketing_opt_in_false_is_stored_and_delivered(sandbox, tenant):
    response = log_in(
        APIClient(), "google", email="nope@example.com", redirect_uri=f"{SPA_PAGE}?marketing_opt_in=false"
    )
    query, _ = spa_landing(response)
    assert query["marketing_opt_in"] == "false"
    assert User.objects.get(email="nope@example.com").marketing_opt_in is False


def test_a_returning_user_is_found_by_provider_subject_and_keeps_one_identity(sandbox, tenant):
    first, _ = spa_landing(log_in(APIClient(), "google", email="again@example.com"))
    second, _ = spa_landing(log_in(APIClient(), "google", email="again@example.com", redirect_uri=SPA_PAGE))
    assert first["user_id"] == second["user_id"]
    assert SocialIdentity.objects.filter(provider="google").count() == 1
    # No marketing_opt_in on the way back: the user's earlier choice stands.
    assert second["marketing_opt_in"] == "true"


def test_the_spa_pages_own_query_keys_survive_and_thor_keys_cannot_be_smuggled(sandbox, tenant):
    page = f"{SPA_PAGE}?next=%2Fportfolio&access_token=planted&marketing_opt_in=true"
    query, _ = spa_landing(log_in(APIClient(), "google", email="keys@example.com", redirect_uri=page))
    assert query["next"] == "/portfolio"
    assert query["access_token"] != "planted"


# --- Linking rules -------------------------------------------------------------------------------


def test_a_verified_email_links_to_the_existing_user_of_the_tenant(sandbox, alice):
    query, _ = spa_landing(log_in(APIClient(), "google", email="alice@acme.test"))
    assert query["user_id"] == str(alice.pk)
    assert SocialIdentity.objects.get(user=alice).provider == "google"
    alice.refresh_from_db()
    assert alice.has_usable_password()  # linking changes nothing about how she logged in before


@pytest.mark.parametrize("provider", ["google", "discord"])
def test_an_unverified_email_matching_an_existing_user_never_links(sandbox, tenant, provider):
    victim = UserFactory(email="victim@example.com.unverified", tenant=tenant)
    response = log_in(APIClient(), provider, email="victim@example.com.unverified")

    query, _ = spa_landing(response)
    assert query == {"error": "email_unverified", "agent": "acme", "provider": provider}
    assert not SocialIdentity.objects.filter(user=victim).exists()


def test_an_unverified_email_does_not_create_a_user_either(sandbox, tenant):
    query, _ = spa_landing(log_in(APIClient(), "discord", email="squatter@example.com.unverified"))
    assert query["error"] == "email_unverified"
    assert not User.objects.filter(email="squatter@example.com.unverified").exists()


def test_an_email_of_another_tenants_user_is_refused(sandbox, tenant, charlie):
    query, _ = spa_landing(log_in(APIClient(), "google", email="charlie@globex.test"))
    assert query["error"] == "other_tenant" and "access_token" not in query
    assert not SocialIdentity.objects.exists()


def test_a_disabled_user_gets_no_token(sandbox, alice):
    spa_landing(log_in(APIClient(), "google", email="alice@acme.test"))
    User.objects.filter(pk=alice.pk).update(is_active=False)
    query, _ = spa_landing(log_in(APIClient(), "google", email="alice@acme.test"))
    assert query["error"] == "inactive"


# --- The login start: tenants, providers, redirect_uri ------------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/oauth-complete.html",
        "http://localhost:5173@evil.example/oauth-complete.html",
        "http://localhost:5173:@evil.example/",
        "javascript:alert(document.cookie)//http://localhost:5173",
        "//evil.example/oauth-complete.html",
        "http://localhost:5174/oauth-complete.html",
        "https://localhost:5173/oauth-complete.html",
        "http://localhost:5173\\@evil.example/",
        "",
    ],
)
def test_a_redirect_uri_off_the_tenants_origins_is_refused_before_anything_starts(sandbox, tenant, redirect_uri):
    response = start(APIClient(), "google", redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert response.json()["code"] == "origin_not_allowed"
    assert "Location" not in response and not response.cookies


@pytest.mark.parametrize("provider", ["google", "discord"])
def test_every_hop_of_a_login_in_a_popup_keeps_its_opener(sandbox, tenant, provider):
    browser = APIClient()
    started = start(browser, provider)
    finished_url = sign_in_at_provider(started["Location"], "popup@example.com")
    landed = follow(browser, finished_url)
    replayed = follow(browser, finished_url)
    refused = start(APIClient(), provider, redirect_uri="https://evil.test/")

    assert (started.status_code, landed.status_code, replayed.status_code, refused.status_code) == (302, 302, 302, 400)
    assert all(opener_kept(answer) for answer in (started, landed, replayed, refused))
    assert APIClient().get("/api/auth/identities/")["Cross-Origin-Opener-Policy"] == "same-origin"


def test_a_bad_marketing_opt_in_is_refused(sandbox, tenant):
    response = start(APIClient(), "google", redirect_uri=f"{SPA_PAGE}?marketing_opt_in=maybe")
    assert response.status_code == 400


def test_an_unknown_agent_or_provider_is_404(sandbox, tenant):
    assert start(APIClient(), "google", agent="nobody").status_code == 404
    assert start(APIClient(), "myspace").status_code == 404
    # A callback is a page a person sees: an unknown provider there gets the login link page.
    assert_login_link_page(APIClient().get("/api/acme/v1/auth/oauth/myspace/callback?state=x"), "myspace")


def test_a_provider_app_the_tenant_disabled_is_404(sandbox, tenant):
    SocialApp.objects.create(tenant=tenant, provider="google", client_id="x", client_secret="y", enabled=False)
    assert start(APIClient(), "google").status_code == 404


def test_a_tenants_own_provider_app_is_used_instead_of_the_default(sandbox, tenant):
    SocialApp.objects.create(tenant=tenant, provider="discord", client_id="acme-discord", client_secret="acme-secret")
    sandbox.server.discord.register_client(IdpClient("acme-discord", "acme-secret"))
    browser = APIClient()
    response = start(browser, "discord")
    assert "client_id=acme-discord" in response["Location"]
    query, _ = spa_landing(follow(browser, sign_in_at_provider(response["Location"], "own.app@example.com")))
    assert query["provider"] == "discord" and "access_token" in query


def test_the_login_start_sends_pkce_s256_a_nonce_and_an_httponly_lax_cookie(sandbox, tenant):
    response = start(APIClient(), "google")
    location = response["Location"]
    assert response.status_code == 302
    assert "code_challenge_method=S256" in location and "code_challenge=" in location and "nonce=" in location
    assert "code_verifier" not in location
    (cookie,) = response.cookies.values()
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and int(cookie["max-age"]) == 600
    assert response["Cache-Control"] == "no-store"


def test_login_starts_are_throttled_per_ip(sandbox, tenant, settings):
    settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, "oauth_start": "2/min"}
    client = APIClient()
    assert [start(client, "google").status_code for _ in range(3)] == [302, 302, 429]


def test_a_provider_that_is_down_at_the_start_is_503(sandbox, tenant, settings):
    settings.THOR_GOOGLE_DISCOVERY_URL = "http://127.0.0.1:9/.well-known/openid-configuration"
    response = start(APIClient(), "google")
    assert response.status_code == 503 and "Location" not in response


# --- The callback: state and browser binding -----------------------------------------------------


def test_a_callback_finished_in_another_browser_logs_nobody_in(sandbox, tenant):
    attacker = APIClient()
    finished_url = provider_return(attacker, "google", email="attacker@example.com")

    victim = APIClient()
    response = follow(victim, finished_url)

    query, _ = spa_landing(response)
    assert query == {"error": "browser_mismatch", "agent": "acme", "provider": "google"}
    assert not User.objects.filter(email="attacker@example.com").exists()


def test_a_replayed_callback_delivers_no_token(sandbox, tenant):
    browser = APIClient()
    finished_url = provider_return(browser, "google")
    assert "access_token" in spa_landing(follow(browser, finished_url))[0]
    # The login removed its cookie, so the replay is refused before the state is even looked up.
    replay = follow(browser, finished_url)
    assert_no_token(replay)


def test_a_replayed_callback_with_the_cookie_kept_is_refused(sandbox, tenant):
    browser = APIClient()
    response = start(browser, "google")
    cookies = {name: morsel.value for name, morsel in response.cookies.items()}
    finished_url = sign_in_at_provider(response["Location"], "replay@example.com")
    assert "access_token" in spa_landing(follow(browser, finished_url))[0]
    for name, value in cookies.items():
        browser.cookies[name] = value
    replay = follow(browser, finished_url)
    query, _ = spa_landing(replay)
    assert query["error"] == "state_used" and "access_token" not in query
    assert (query["agent"], query["provider"]) == ("acme", "google")


@pytest.mark.parametrize(
    "state", ["", "forged", "eyJ0ZW5hbnQiOiJhY21lIn0:1tamper:signature", "<b>hi</b>", "'; DROP TABLE x;--"]
)
def test_a_forged_state_is_the_login_link_page(sandbox, tenant, state):
    response = APIClient().get("/api/acme/v1/auth/oauth/google/callback", {"code": "x", "state": state})
    assert_login_link_page(response, "<b>", "DROP TABLE", "tamper")


def test_an_altered_state_is_400(sandbox, tenant):
    browser = APIClient()
    finished_url = provider_return(browser, "google")
    tampered = finished_url.replace("state=", "state=x", 1)
    response = follow(browser, tampered)
    assert_login_link_page(response)


def test_a_state_older_than_ten_minutes_goes_back_to_the_spa_saying_so(sandbox, tenant):
    browser = APIClient()
    finished_url = provider_return(browser, "google")
    with time_machine.travel(timedelta(minutes=11)):
        response = follow(browser, finished_url)
    query, _ = spa_landing(response)
    assert query["error"] == "state_expired" and "access_token" not in query
    assert (query["agent"], query["provider"]) == ("acme", "google")


def test_a_state_from_another_tenant_is_400(sandbox, tenant, other_tenant):
    browser = APIClient()
    finished_url = provider_return(browser, "google")
    response = follow(browser, finished_url.replace("/api/acme/", "/api/globex/"))
    assert_login_link_page(response)


def test_a_state_from_another_provider_is_400(sandbox, tenant):
    browser = APIClient()
    finished_url = provider_return(browser, "google")
    response = follow(browser, finished_url.replace("/oauth/google/", "/oauth/discord/"))
    assert_login_link_page(response)


def test_an_expired_state_of_another_provider_is_the_page_not_a_redirect(sandbox, tenant):
    browser = APIClient()
    finished_url = provider_return(browser, "google")
    with time_machine.travel(timedelta(minutes=11)):
        response = follow(browser, finished_url.replace("/oauth/google/", "/oauth/discord/"))
    assert_login_link_page(response)


def test_a_state_whose_origin_the_tenant_dropped_is_400(sandbox, tenant):
    browser = APIClient()
    finished_url = provider_return(browser, "google")
    Tenant.objects.filter(pk=tenant.pk).update(allowed_origins=["https://app.acme.test"])
    assert_login_link_page(follow(browser, finished_url), "localhost")


def test_the_browser_that_started_still_finishes_after_a_stranger_tried(sandbox, tenant):
    browser = APIClient()
    finished_url = provider_return(browser, "google", email="patient@example.com")
    assert spa_landing(follow(APIClient(), finished_url))[0]["error"] == "browser_mismatch"
    assert "access_token" in spa_landing(follow(browser, finished_url))[0]


# --- The provider's answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spoil",
    [
        {"aud": "someone-elses-client"},
        {"nonce": "a-nonce-from-another-login"},
        {"bad_signature": True},
        {"exp_offset": -3600 - 120},
        {"iss": "https://accounts.evil.example"},
    ],
    ids=["wrong-aud", "wrong-nonce", "bad-signature", "expired", "wrong-iss"],
)
def test_an_id_token_that_is_not_for_this_login_is_refused(sandbox, tenant, spoil):
    browser = APIClient()
    finished_url = provider_return(browser, "google", email="spoiled@example.com")
    sandbox.server.google.spoil_next_id_token(**spoil)

    query, _ = spa_landing(follow(browser, finished_url))

    assert query == {"error": "id_token_invalid", "agent": "acme", "provider": "google"}
    assert not User.objects.filter(email="spoiled@example.com").exists()


@pytest.mark.parametrize(("error", "code"), [("access_denied", "denied"), ("server_error", "provider_error")])
def test_a_denial_or_provider_error_on_the_callback_redirects_with_an_error(sandbox, tenant, error, code):
    browser = APIClient()
    response = start(browser, "discord")
    state = dict(p.split("=", 1) for p in response["Location"].split("?", 1)[1].split("&"))["state"]
    answer = browser.get(f"/api/acme/v1/auth/oauth/discord/callback?error={error}&state={state}")
    query, _ = spa_landing(answer)
    assert query == {"error": code, "agent": "acme", "provider": "discord"}


@pytest.mark.parametrize("provider", ["google", "discord"])
def test_a_token_endpoint_failure_redirects_with_an_error(sandbox, tenant, provider):
    browser = APIClient()
    finished_url = provider_return(browser, provider)
    token_path = "/google/token" if provider == "google" else "/discord/api/oauth2/token"
    _fault(sandbox, broker=provider, kind="5xx", path=token_path, count=1)

    query, _ = spa_landing(follow(browser, finished_url))
    assert query["error"] == "provider_error" and "access_token" not in query


@pytest.mark.parametrize("provider", ["google", "discord"])
def test_a_provider_that_times_out_redirects_with_provider_timeout(sandbox, tenant, provider, settings):
    settings.THOR_SOCIAL_HTTP_TIMEOUT = 0.3
    browser = APIClient()
    finished_url = provider_return(browser, provider)
    token_path = "/google/token" if provider == "google" else "/discord/api/oauth2/token"
    _fault(sandbox, broker=provider, kind="latency", path=token_path, ms=1000, count=1)

    query, _ = spa_landing(follow(browser, finished_url))
    assert query["error"] == "provider_timeout"


def test_a_code_the_provider_does_not_know_is_exchange_failed(sandbox, tenant):
    browser = APIClient()
    finished_url = provider_return(browser, "discord")
    query, _ = spa_landing(follow(browser, finished_url.replace("code=", "code=not-", 1)))
    assert query["error"] == "exchange_failed"


def _fault(sandbox, **fault):
    requests.post(f"{sandbox.url}/_sandbox/faults", json=fault, timeout=5).raise_for_status()
