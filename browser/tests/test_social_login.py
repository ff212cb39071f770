"""Seed 004: social login through the tenant's agent path, landing on oauth-complete.html."""

import uuid

import pytest

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("provider", ["google", "discord"])
def test_a_social_login_lands_on_oauth_complete_and_signs_the_spa_in(spa, stack, provider):
    email = f"{provider}-{uuid.uuid4().hex[:12]}@example.com"
    spa.open("/social.html")
    spa.click("#marketing")
    spa.click(f"button[data-provider='{provider}']")
    spa.wait_for("The sandbox provider's sign-in page", lambda: spa.driver.current_url.startswith(stack.sandbox_url))
    spa.fill({"email": email})
    spa.click("form button[type='submit']")

    spa.wait_for_text(
        "#signed-in",
        lambda text: text == f"Signed in as {email} with {provider} (marketing: true)",
        "Signed in on the SPA's home with the token oauth-complete.html kept",
    )
    assert "access_token" not in spa.driver.current_url
