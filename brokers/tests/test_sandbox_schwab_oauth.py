"""The Schwab sandbox's OAuth server (brokers.sandbox.schwab_oauth) over real HTTP: the login page, single-use
codes, the token endpoint, rotating refresh tokens and their lifetimes."""

import base64
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from brokers.sandbox.testing import submit_schwab_login
from brokers.tests import schwab_sandbox_calls
from brokers.tests.schwab_sandbox_calls import (
    CALLBACK,
    CLIENT_ID,
    api,
    authorize_url,
    basic,
    log_in,
    refresh_call,
    token_call,
    tokens_for,
)

pytestmark = pytest.mark.e2e

# The sandbox's fixtures, by the names pytest finds them under.
clock = schwab_sandbox_calls.clock
sandbox = schwab_sandbox_calls.sandbox
session = schwab_sandbox_calls.session


# --- the login page ---------------------------------------------------------------------------


def test_the_login_page_is_a_form_that_carries_the_app_and_the_state(sandbox):
    page = requests.get(authorize_url(sandbox, state='"><script>alert(1)</script>'))

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<form method="post" action="/v1/oauth/authorize">' in page.text
    assert f'name="client_id" value="{CLIENT_ID}"' in page.text
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "nobody"},
        {"client_id": f"{CLIENT_ID}@AMER.OAUTHAP"},
        {"redirect_uri": CALLBACK + "/"},
        {"redirect_uri": CALLBACK.replace("https", "HTTPS")},
        {"redirect_uri": "https://evil.test/schwab/callback"},
        {"response_type": "token"},
    ],
)
def test_the_login_page_refuses_unknown_apps_and_inexact_callbacks(sandbox, overrides):
    page = requests.get(authorize_url(sandbox, **overrides))

    assert page.status_code == 400 and "<form" not in page.text


def test_a_wrong_password_shows_the_form_again(sandbox):
    answer = submit_schwab_login(authorize_url(sandbox), username="sandbox", password="wrong")

    assert answer.status_code == 401 and "Invalid login ID or password" in answer.text


def test_a_login_redirects_with_a_code_ending_in_at_url_encoded_a_session_and_the_state(sandbox):
    answer = submit_schwab_login(authorize_url(sandbox, state="s/t+a=te"), username="sandbox", password="sandbox")

    location = answer.headers["Location"]
    assert location.startswith(f"{CALLBACK}?code=")
    raw_code = location.split("code=", 1)[1].split("&", 1)[0]
    assert raw_code.endswith("%40") and "@" not in raw_code
    query = parse_qs(urlsplit(location).query)
    assert query["code"][0].endswith("@") and query["state"] == ["s/t+a=te"] and query["session"][0]
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_posted_login_cannot_name_another_callback(sandbox):
    answer = requests.post(
        f"{sandbox.url}/v1/oauth/authorize",
        data={
            "client_id": CLIENT_ID,
            "redirect_uri": "https://evil.test/cb",
            "state": "s",
            "username": "sandbox",
            "password": "sandbox",
        },
        allow_redirects=False,
    )

    assert answer.status_code == 400 and "Location" not in answer.headers


# --- the token endpoint -----------------------------------------------------------------------


def test_a_code_buys_a_30_minute_access_token_and_a_refresh_token(sandbox):
    tokens = tokens_for(sandbox)

    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 1800 and tokens["scope"] == "api"
    assert tokens["access_token"] and tokens["refresh_token"] and tokens["id_token"]


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "invalid_client"),
        (basic(secret="wrong"), "invalid_client"),
        (basic(client_id="nobody"), "invalid_client"),
        ({"Authorization": "Basic not-base64!!"}, "invalid_client"),
        ({"Authorization": "Bearer " + base64.b64encode(b"a:b").decode()}, "invalid_client"),
    ],
)
def test_the_token_endpoint_wants_the_apps_basic_credentials(sandbox, headers, error):
    code = log_in(sandbox)["code"]

    answer = token_call(
        sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}, headers=headers
    )

    assert answer.status_code == 401 and answer.json()["error"] == error


@pytest.mark.parametrize("redirect_uri", [CALLBACK + "/", CALLBACK.upper(), "", "https://evil.test/cb"])
def test_the_token_endpoint_wants_the_exact_redirect_uri(sandbox, redirect_uri):
    code = log_in(sandbox)["code"]

    answer = token_call(sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_a_code_works_once_and_not_after_it_expires(sandbox, clock):
    code = log_in(sandbox)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
    assert token_call(sandbox, form).status_code == 200
    assert token_call(sandbox, form).json()["error"] == "invalid_grant"

    late = log_in(sandbox)["code"]
    clock.advance(61)
    answer = token_call(sandbox, {**form, "code": late})

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("code", ["", "garbage", "C0.abc%40", "'; DROP TABLE grants; --", "x" * 5000])
def test_garbage_codes_are_refused(sandbox, code):
    answer = token_call(sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK})

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_only_the_two_grants_and_only_form_bodies(sandbox):
    assert token_call(sandbox, {"grant_type": "password"}).json()["error"] == "unsupported_grant_type"
    as_json = requests.post(
        f"{sandbox.url}/v1/oauth/token", json={"grant_type": "refresh_token", "refresh_token": "x"}, headers=basic()
    )
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"


def test_a_refresh_rotates_the_refresh_token_and_supersedes_the_access_token(sandbox):
    first = tokens_for(sandbox)

    second = refresh_call(sandbox, first["refresh_token"]).json()

    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert api(sandbox, "GET", "/trader/v1/userPreference", second["access_token"]).status_code == 200
    superseded = api(sandbox, "GET", "/trader/v1/userPreference", first["access_token"])
    assert superseded.status_code == 401
    # Two refreshers of one connection: the second, holding the spent token, is locked out.
    late = refresh_call(sandbox, first["refresh_token"])
    assert late.status_code == 400 and late.json()["error"] == "refresh_token_authentication_error"
    assert api(sandbox, "GET", "/trader/v1/userPreference", second["access_token"]).status_code == 200


def test_access_tokens_expire_after_30_minutes(sandbox, clock):
    tokens = tokens_for(sandbox)
    clock.advance(1799)
    assert api(sandbox, "GET", "/trader/v1/userPreference", tokens["access_token"]).status_code == 200

    clock.advance(2)

    assert api(sandbox, "GET", "/trader/v1/userPreference", tokens["access_token"]).status_code == 401


def test_refresh_tokens_expire_seven_days_after_the_login_however_often_rotated(sandbox, clock):
    tokens = tokens_for(sandbox)
    for _ in range(3):
        clock.advance(2 * 24 * 3600)
        tokens = refresh_call(sandbox, tokens["refresh_token"]).json()

    clock.advance(24 * 3600 + 1)
    answer = refresh_call(sandbox, tokens["refresh_token"])

    assert answer.status_code == 400 and answer.json()["error"] == "refresh_token_authentication_error"


def test_tests_can_set_lifetimes_and_expire_tokens_now(sandbox):
    answer = requests.post(f"{sandbox.url}/_sandbox/schwab/lifetimes", json={"access_seconds": 120})
    assert answer.json()["access_seconds"] == 120
    tokens = tokens_for(sandbox)
    assert tokens["expires_in"] == 120

    assert requests.post(f"{sandbox.url}/_sandbox/schwab/expire", json={"what": "refresh"}).json() == {"expired": 1}

    assert refresh_call(sandbox, tokens["refresh_token"]).status_code == 400
    for bad in ({"access_seconds": -1}, {"access_seconds": True}, {"nonsense": 1}):
        assert requests.post(f"{sandbox.url}/_sandbox/schwab/lifetimes", json=bad).status_code == 400
    assert requests.post(f"{sandbox.url}/_sandbox/schwab/expire", json={"what": "both"}).status_code == 400


def test_refresh_calls_are_counted_per_connection(sandbox):
    first, second = tokens_for(sandbox), tokens_for(sandbox)
    refreshed = refresh_call(sandbox, first["refresh_token"]).json()
    refresh_call(sandbox, refreshed["refresh_token"])
    refresh_call(sandbox, first["refresh_token"])  # spent: refused, but still a call for that connection

    counts = requests.get(f"{sandbox.url}/_sandbox/schwab/refreshes").json()

    assert counts["total"] == 3 and sorted(counts["by_grant"].values()) == [0, 3]
    assert counts["histogram"] == {"0": 1, "3": 1}
    assert second["refresh_token"]


def test_many_connections_can_be_seeded_at_once(sandbox):
    answer = requests.post(
        f"{sandbox.url}/_sandbox/schwab/grants", json={"client_id": CLIENT_ID, "count": 3, "access_seconds": 60}
    )

    seeded = answer.json()
    assert answer.status_code == 201 and len(seeded) == 3 and seeded[0]["expires_in"] == 60
    assert len({item["customer_id"] for item in seeded}) == 3
    assert refresh_call(sandbox, seeded[0]["refresh_token"]).status_code == 200
    counts = requests.get(f"{sandbox.url}/_sandbox/schwab/refreshes").json()
    assert counts["by_grant"][seeded[0]["grant_id"]] == 1 and counts["histogram"] == {"1": 1, "0": 2}
    for bad in ({"client_id": "nobody", "count": 1}, {"client_id": CLIENT_ID, "count": 0}):
        assert requests.post(f"{sandbox.url}/_sandbox/schwab/grants", json=bad).status_code == 400
