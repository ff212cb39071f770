"""Seed 000: the user's own Kite app, its login in a popup, and /broker-callback telling the opener."""

import json
import secrets

import pytest
import requests

pytestmark = pytest.mark.browser


def kite_app_registered(stack) -> dict:
    """A developer's own Kite app, registered at the sandbox as at Kite's developer console."""
    app = {
        "api_key": f"seed000{secrets.token_hex(4)}",
        "api_secret": secrets.token_hex(16),
        "redirect_url": f"{stack.api}/auth/broker/callback",
        "postback_url": f"{stack.api}/brokers/kite/postback/",
    }
    requests.post(f"{stack.sandbox_url}/_sandbox/apps", json=app, timeout=10).raise_for_status()
    return app


def log_in_in_the_popup(spa, opener: str) -> str:
    """The sandbox's Kite login, filled in the popup the page opened; back in the opener after."""
    popup = spa.wait_for("The Kite login popup opening", lambda: set(spa.driver.window_handles) - {opener})
    handle = popup.pop()
    spa.driver.switch_to.window(handle)
    spa.wait_for("The sandbox's Kite login page", lambda: spa.find("input[name='user_id']"))
    spa.fill({"user_id": "AB1234", "password": "sandbox"})
    spa.click("form button[type='submit']")
    spa.driver.switch_to.window(opener)
    return handle


def connect_started(spa, stack) -> str:
    app = kite_app_registered(stack)
    spa.sign_up()
    spa.open("/kite.html")
    spa.fill({"api_key": app["api_key"], "api_secret": app["api_secret"]})
    spa.click("#connect button")
    return spa.driver.current_window_handle


def test_the_login_popup_posts_the_kite_user_id_to_the_window_that_opened_it(spa, stack):
    opener = connect_started(spa, stack)
    log_in_in_the_popup(spa, opener)

    result = spa.wait_for_text("#result", bool, "The opener receiving the popup's postMessage from /broker-callback")
    assert json.loads(result) == {"status": "success", "user_id": "AB1234"}
    spa.wait_for("The popup closing itself", lambda: spa.driver.window_handles == [opener])


def test_a_login_link_used_already_brings_the_popup_back_to_the_app_with_an_error(spa, stack):
    opener = connect_started(spa, stack)
    first = log_in_in_the_popup(spa, opener)
    spa.wait_for(
        "The first login reaching /broker-callback",
        lambda: first not in spa.driver.window_handles or "/broker-callback" in spa.window_url(first),
    )
    if first in spa.driver.window_handles:
        spa.driver.switch_to.window(first)
        spa.driver.close()
        spa.driver.switch_to.window(opener)

    # The same link again: its state is used, so Thor sends the popup back to the app with an error.
    spa.click("#reopen")
    log_in_in_the_popup(spa, opener)
    result = spa.wait_for_text(
        "#result",
        lambda text: json.loads(text)["status"] == "error",
        "The opener receiving status=error from /broker-callback",
    )
    assert json.loads(result)["error"]
