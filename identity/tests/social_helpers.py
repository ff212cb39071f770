"""A browser's way through a social login against the sandbox's identity providers."""

from urllib.parse import parse_qs, urlencode, urlsplit

import requests

SPA_PAGE = "http://localhost:5173/oauth-complete.html"
OPT_IN_PAGE = f"{SPA_PAGE}?marketing_opt_in=true"


def start(client, provider="google", agent="acme", redirect_uri=OPT_IN_PAGE):
    return client.get(f"/api/{agent}/v1/auth/oauth/{provider}/login?{urlencode({'redirect_uri': redirect_uri})}")


def sign_in_at_provider(authorization_url: str, email: str) -> str:
    """Open the provider's page, submit it with `email`; returns where the provider sends the browser."""
    page = requests.get(authorization_url, timeout=5)
    assert page.status_code == 200 and "<form" in page.text, page.text
    fields = {name: values[0] for name, values in parse_qs(urlsplit(authorization_url).query).items()}
    answer = requests.post(
        authorization_url.split("?")[0], data={**fields, "email": email}, allow_redirects=False, timeout=5
    )
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def follow(client, location: str):
    """Hand a redirect to Thor, as the browser would (with that browser's cookies)."""
    parts = urlsplit(location)
    return client.get(f"{parts.path}?{parts.query}")


def provider_return(client, provider="google", email="new.user@example.com", **start_kwargs) -> str:
    response = start(client, provider, **start_kwargs)
    assert response.status_code == 302, response.content
    return sign_in_at_provider(response["Location"], email)


def log_in(client, provider="google", email="new.user@example.com", **start_kwargs):
    """The whole login in one browser; returns Thor's final answer (a redirect to the SPA)."""
    return follow(client, provider_return(client, provider, email, **start_kwargs))


def spa_landing(response, page=SPA_PAGE) -> tuple[dict, dict]:
    """The final redirect's query and fragment fields, after checking it lands on the SPA page."""
    assert response.status_code == 302, response.content
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == page
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    fragment = {key: values[0] for key, values in parse_qs(location.fragment).items()}
    return query, fragment


# Seed 004's final redirect, as its SPA reads it: written out here, not taken from the code under test.
SEED_004_KEYS = [
    "access_token",
    "token_type",
    "role",
    "user_id",
    "expires_in",
    "email",
    "marketing_opt_in",
    "agent",
    "provider",
]
