import time

import pytest
import time_machine
from django.core import signing

from brokers import oauth_state

STATE = {
    "user_id": 7,
    "tenant_slug": "acme",
    "app_id": 3,
    "connection_id": 11,
    "frontend_origin": "https://app.acme.test",
}


def test_a_state_comes_back_with_what_it_was_issued_for():
    token = oauth_state.issue(**STATE)

    state = oauth_state.consume(token)

    assert (state.user_id, state.tenant_slug, state.app_id, state.connection_id) == (7, "acme", 3, 11)
    assert state.frontend_origin == "https://app.acme.test"


def test_a_state_works_once():
    token = oauth_state.issue(**STATE)
    oauth_state.consume(token)

    with pytest.raises(oauth_state.StateInvalid):
        oauth_state.consume(token)


def test_a_state_still_works_just_before_ten_minutes():
    token = oauth_state.issue(**STATE)

    with time_machine.travel(time.time() + 595, tick=False):
        assert oauth_state.consume(token).user_id == 7


def test_a_state_dies_after_ten_minutes():
    token = oauth_state.issue(**STATE)

    with time_machine.travel(time.time() + 601, tick=False), pytest.raises(oauth_state.StateInvalid):
        oauth_state.consume(token)


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: signing.dumps({**STATE, "nonce": "made-up"}, salt=oauth_state.SALT),
        lambda token: signing.dumps({**STATE, "nonce": "x"}, salt="another-purpose"),
        lambda token: "",
        lambda token: "x" * 5000,
        lambda token: None,
    ],
    ids=["tampered", "unknown-nonce", "other-salt", "empty", "huge", "missing"],
)
def test_forged_states_fail(forge):
    token = oauth_state.issue(**STATE)

    with pytest.raises(oauth_state.StateInvalid):
        oauth_state.consume(forge(token))


def test_a_state_carries_no_secret_in_clear():
    token = oauth_state.issue(**STATE)

    assert "secret" not in signing.loads(token, salt=oauth_state.SALT)


def test_a_used_state_says_so_and_still_names_its_frontend():
    token = oauth_state.issue(**STATE)
    oauth_state.consume(token)

    with pytest.raises(oauth_state.StateInvalid) as used:
        oauth_state.consume(token)

    assert used.value.code == "state_used" and used.value.state.frontend_origin == "https://app.acme.test"


def test_an_expired_state_says_so_and_still_names_its_frontend():
    token = oauth_state.issue(**STATE)

    with time_machine.travel(time.time() + 601, tick=False), pytest.raises(oauth_state.StateInvalid) as expired:
        oauth_state.consume(token)

    assert expired.value.code == "state_expired" and expired.value.state.user_id == 7


def test_a_forged_state_names_nothing():
    token = oauth_state.issue(**STATE)
    forged = signing.dumps({**STATE, "frontend_origin": "https://evil.test", "nonce": "x"}, salt="another-purpose")

    for bad in (forged, token[:-2] + "AA" if not token.endswith("AA") else token[:-2] + "BB", "x" * 5000):
        with pytest.raises(oauth_state.StateInvalid) as invalid:
            oauth_state.consume(bad)
        assert (invalid.value.code, invalid.value.state) == ("state_invalid", None)
