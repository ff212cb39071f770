"""The sandbox's identity providers keep the rules Thor relies on from Google and Discord."""

import base64
import hashlib
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from brokers.sandbox.testing import start_sandbox

CLIENT = {"client_id": "c1", "client_secret": "s1"}
REDIRECT = "http://localhost:9999/cb"
VERIFIER = "v" * 50


def challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def idp():
    with start_sandbox(tick_seconds=None, idp_clients={"google": [CLIENT], "discord": [CLIENT]}) as running:
        yield running


def authorize(idp, provider: str, email: str, **overrides) -> str:
    path = "/google/o/oauth2/v2/auth" if provider == "google" else "/discord/oauth2/authorize"
    fields = {
        "client_id": "c1",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid email",
        "state": "st",
        "code_challenge": challenge(VERIFIER),
        "code_challenge_method": "S256",
        "nonce": "n1",
        **overrides,
    }
    page = requests.get(f"{idp.url}{path}?{urlencode(fields)}", timeout=5)
    assert page.status_code == 200 and "<form" in page.text
    answer = requests.post(f"{idp.url}{path}", data={**fields, "email": email}, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st"]
    return query["code"][0]


def token(idp, provider: str, code: str, **overrides):
    path = "/google/token" if provider == "google" else "/discord/api/oauth2/token"
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        **CLIENT,
        **overrides,
    }
    return requests.post(f"{idp.url}{path}", data=data, timeout=5)


@pytest.mark.parametrize("provider", ["google", "discord"])
@pytest.mark.parametrize(
    ("overrides", "status"),
    [({"code_verifier": "w" * 50}, 400), ({"client_secret": "wrong"}, 401), ({"redirect_uri": "http://evil/cb"}, 400)],
    ids=["wrong-verifier", "wrong-secret", "other-redirect"],
)
def test_the_token_endpoint_checks_verifier_secret_and_redirect(idp, provider, overrides, status):
    code = authorize(idp, provider, "a@example.com")
    assert token(idp, provider, code, **overrides).status_code == status


@pytest.mark.parametrize("provider", ["google", "discord"])
def test_a_code_works_once(idp, provider):
    code = authorize(idp, provider, "a@example.com")
    assert token(idp, provider, code).status_code == 200
    assert token(idp, provider, code).status_code == 400


def test_authorize_refuses_an_unknown_client_or_no_pkce(idp):
    base = {"client_id": "c1", "redirect_uri": REDIRECT, "response_type": "code", "state": "s"}
    unknown = requests.get(f"{idp.url}/google/o/oauth2/v2/auth?{urlencode({**base, 'client_id': 'x'})}", timeout=5)
    assert unknown.status_code == 400
    no_pkce = requests.post(f"{idp.url}/discord/oauth2/authorize", data={**base, "email": "a@b.c"}, timeout=5)
    assert no_pkce.status_code == 400


def test_google_signs_an_id_token_its_jwks_verifies_with_nonce_and_email_verified(idp):
    discovery = requests.get(f"{idp.url}/google/.well-known/openid-configuration", timeout=5).json()
    assert discovery["issuer"] == f"{idp.url}/google"
    code = authorize(idp, "google", "someone@example.com")
    body = token(idp, "google", code).json()
    keys = KeySet.import_key_set(requests.get(discovery["jwks_uri"], timeout=5).json())
    claims = jwt.decode(body["id_token"], keys).claims
    assert claims["aud"] == "c1" and claims["nonce"] == "n1" and claims["iss"] == discovery["issuer"]
    assert claims["email"] == "someone@example.com" and claims["email_verified"] is True


def test_discord_reports_the_user_and_an_unverified_email(idp):
    code = authorize(idp, "discord", "me@example.com.unverified")
    access = token(idp, "discord", code).json()["access_token"]
    me = requests.get(f"{idp.url}/discord/api/users/@me", headers={"Authorization": f"Bearer {access}"}, timeout=5)
    assert me.status_code == 200
    assert me.json()["email"] == "me@example.com.unverified" and me.json()["verified"] is False
    assert requests.get(f"{idp.url}/discord/api/users/@me", timeout=5).status_code == 401


def test_the_same_email_is_the_same_subject(idp):
    first = token(idp, "discord", authorize(idp, "discord", "same@example.com")).json()["access_token"]
    second = token(idp, "discord", authorize(idp, "discord", "same@example.com")).json()["access_token"]
    ids = [
        requests.get(f"{idp.url}/discord/api/users/@me", headers={"Authorization": f"Bearer {t}"}, timeout=5).json()[
            "id"
        ]
        for t in (first, second)
    ]
    assert ids[0] == ids[1]
