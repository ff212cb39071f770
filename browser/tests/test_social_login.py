"""Seed 004: social login through the tenant's agent path, landing on oauth-complete.html."""

import uuid

import pytest

pytestmark = pytest.mark.browser


def signed_in_at_the_provider(spa, provider: str) -> str:
    """The sandbox provider's page filled in; the email the provider tells Thor."""
    if provider == "zerodha":
        # Kite's login page; AB1234 is the Kite popup's account, so this one is the other demo user.
        spa.fill({"user_id": "CD5678", "password": "sandbox"})
        email = "cd5678@sandbox.invalid"
    else:
        email = f"{provider}-{uuid.uuid4().hex[:12]}@example.com"
        spa.fill({"email": email})
    spa.click("form button[type='submit']")
    return email


@pytest.mark.parametrize("provider", ["google", "discord", "zerodha"])
def test_a_social_login_lands_on_oauth_complete_and_signs_the_spa_in(spa, stack, provider):
    spa.open("/social.html")
    spa.click("#marketing")
    spa.click(f"button[data-provider='{provider}']")
    spa.wait_for("The sandbox provider's sign-in page", lambda: spa.driver.current_url.startswith(stack.sandbox_url))
    email = signed_in_at_the_provider(spa, provider)

    spa.wait_for_text(
        "#signed-in",
        lambda text: text == f"Signed in as {email} with {provider} (marketing: true)",
        "Signed in on the SPA's home with the token oauth-complete.html kept",
    )
    assert "access_token" not in spa.driver.current_url
