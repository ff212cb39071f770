"""Seed 002: Connect Schwab, the SPA's /schwab/callback relay, and the account dropdown."""

import pytest

pytestmark = pytest.mark.browser


def test_a_linked_schwab_account_is_read_with_the_number_its_dropdown_shows(spa, stack):
    spa.sign_up()
    spa.open("/schwab.html")
    spa.click("#connect")
    spa.wait_for("The sandbox's Schwab login page", lambda: spa.driver.current_url.startswith(stack.sandbox_url))
    spa.fill({"username": "sandbox", "password": "sandbox"})
    spa.click("form button[type='submit']")
    spa.wait_for_text("#status", lambda text: text == "Schwab connected", "Back on the dashboard, connected")

    options = spa.wait_for(
        "The dropdown listing both sandbox accounts",
        lambda: len(found := spa.driver.find_elements("css selector", "#account option")) >= 2 and found,
    )
    numbers = [option.get_attribute("value") for option in options]
    for number in numbers:
        spa.driver.execute_script(
            "const select = document.getElementById('account');"
            "select.value = arguments[0]; select.dispatchEvent(new Event('change'));",
            number,
        )
        spa.wait_for(
            f"The summary of {number}, as the dropdown holds it",
            lambda number=number: spa.text("#summary-account") == number and not spa.text("#summary-error"),
        )
        assert spa.text("#summary-net-liquidation")
