"""Seed 002's interceptor: three requests in flight when the access token expires, each refreshing on its 401."""

import json
import time

import pytest

pytestmark = pytest.mark.browser


def test_three_parallel_401s_are_each_refreshed_and_retried_and_the_user_stays_signed_in(spa, early_session):
    # The SPA tab kept the tokens of a sign-in at the start of the suite; its access token has expired now.
    time.sleep(max(0.0, early_session["access_expires_at"] + 1 - time.time()))
    spa.open("/index.html")
    spa.driver.execute_script(
        "localStorage.setItem('jwt_token', arguments[0]); localStorage.setItem('refresh_token', arguments[1]);",
        early_session["access"],
        early_session["refresh"],
    )
    spa.open("/refresh.html")
    spa.click("#load")
    outcome = json.loads(spa.wait_for_text("#outcome", bool, "The dashboard's three reads settling"))

    # The seed's interceptor: each 401 refreshes on its own, all three with the refresh token the tab held.
    # Within the reuse grace window each answers the same successor pair (RFC 9700 section 4.14), so
    # whichever answer the tab keeps last, it holds the one live refresh token.
    said = "\n".join(
        [
            *(
                f"refresh spent {each['token']}: {each['status']} {each.get('detail') or ''} received {each.get('received')}"
                for each in outcome["refreshes"]
            ),
            *(f"read {read['path']}: {'ok' if read['ok'] else read['error']}" for read in outcome["reads"]),
            f"signed in after: {outcome['logged_in']}, {outcome.get('after')}, refresh again: {outcome.get('refresh_after')}",
        ]
    )
    first_three = outcome["refreshes"][:3]
    assert [refresh["token"] for refresh in first_three] == ["#1", "#1", "#1"], said
    assert [(refresh["status"], refresh.get("received")) for refresh in first_three] == [(200, "#2")] * 3, said
    assert all(read["ok"] for read in outcome["reads"]), said
    assert outcome["logged_in"], said
    assert outcome["after"] == early_session["email"], said
    assert outcome["refresh_after"] == "ok", said
