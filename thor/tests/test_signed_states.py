"""A flow's state comes back only as Thor signed it; a token that is merely old still says where it came from."""

from dataclasses import dataclass

import pytest
import time_machine
from django.core import signing

from thor.signed_states import SignedStates, StateInvalid


@dataclass(frozen=True)
class Trip:
    user_id: int
    back_to: str


class TripInvalid(StateInvalid):
    pass


TRIPS = SignedStates(Trip, salt="thor.tests.trip", max_age=lambda: 600, max_length=500, error=TripInvalid)
TRIP = Trip(user_id=7, back_to="https://app.example.com/done")


def test_a_signed_state_reads_back_whole():
    assert TRIPS.read(TRIPS.sign(TRIP)) == TRIP
    assert TRIPS.signed(TRIPS.sign(TRIP)) == TRIP


def test_the_token_carries_no_field_in_the_clear():
    # Compressed and base64'd: not a secret (the fields are not credentials), but no page or id to read off a log.
    assert "app.example.com" not in TRIPS.sign(TRIP)


@pytest.mark.parametrize("token", [None, "", 42, b"bytes", ["a list"], "x" * 501])
def test_what_is_not_a_plausible_token_is_missing_before_anything_is_decoded(token):
    with pytest.raises(TripInvalid) as refused:
        TRIPS.read(token)
    assert (str(refused.value), refused.value.code, refused.value.state) == ("missing", "state_invalid", None)
    assert TRIPS.signed(token) is None


def test_an_altered_token_is_refused_and_names_no_state():
    token = TRIPS.sign(TRIP)
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(TripInvalid) as refused:
        TRIPS.read(altered)
    assert (refused.value.code, refused.value.state) == ("state_invalid", None)
    assert TRIPS.signed(altered) is None


def test_a_token_signed_for_another_flow_is_refused():
    other = SignedStates(Trip, salt="thor.tests.other-trip", max_age=lambda: 600, max_length=500)
    with pytest.raises(TripInvalid):
        TRIPS.read(other.sign(TRIP))
    assert TRIPS.signed(other.sign(TRIP)) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"user_id": 7, "back_to": "/", "is_staff": True},  # a field the state does not have
        {"user_id": 7},  # one missing
        ["a", "list"],
        "a string",
    ],
)
def test_a_signed_value_of_another_shape_is_refused_as_a_forgery(fields):
    token = signing.dumps(fields, salt="thor.tests.trip", compress=True)
    with pytest.raises(TripInvalid) as refused:
        TRIPS.read(token)
    assert (str(refused.value), refused.value.state) == ("bad signature", None)
    assert TRIPS.signed(token) is None


def test_an_old_token_is_expired_and_still_names_its_state():
    with time_machine.travel("2026-12-07 10:00:00Z", tick=False):
        token = TRIPS.sign(TRIP)
    with time_machine.travel("2026-12-07 10:10:01Z", tick=False), pytest.raises(TripInvalid) as refused:
        TRIPS.read(token)
    assert (str(refused.value), refused.value.code, refused.value.state) == ("expired", "state_expired", TRIP)
    with time_machine.travel("2026-12-07 10:09:59Z", tick=False):
        assert TRIPS.read(token) == TRIP


def test_the_lifetime_is_asked_on_every_read():
    lifetime = {"seconds": 600}
    trips = SignedStates(Trip, salt="thor.tests.trip", max_age=lambda: lifetime["seconds"], max_length=500)
    with time_machine.travel("2026-12-07 10:00:00Z", tick=False):
        token = trips.sign(TRIP)
    with time_machine.travel("2026-12-07 10:05:00Z", tick=False):
        assert trips.read(token) == TRIP
        lifetime["seconds"] = 60
        with pytest.raises(StateInvalid) as refused:
            trips.read(token)
    assert refused.value.code == "state_expired"
