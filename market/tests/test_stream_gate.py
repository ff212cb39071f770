"""A stream's runner reads its session (a failed read is logged and read again later), and connects on it
unless there is none (said once in the log) or its token waits out a refusal: a backoff that doubles with each
refusal of the same token in a row, up to a ceiling, while a new token is tried at once."""

import logging

import pytest

from market.stream_gate import SessionGate, session_read
from market.tests.quote_steps import Clock

logger = logging.getLogger("market.tests.stream_gate")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def gate(clock) -> SessionGate[str]:
    return SessionGate(
        logger, "waiting", token=lambda session: session, backoff_seconds=5, most_seconds=30, clock=clock
    )


def test_without_a_session_it_waits_and_says_so_once_until_one_comes(gate, caplog):
    with caplog.at_level(logging.INFO, logger=logger.name):
        assert not gate.open_for(None)
        assert not gate.open_for(None)
        assert gate.open_for("token-a")
        assert not gate.open_for(None)

    assert [record.message for record in caplog.records] == ["waiting", "waiting"]


def test_a_refused_token_waits_twice_as_long_each_time_up_to_the_ceiling(gate, clock):
    waits = []
    for _ in range(4):
        gate.refused("token-a")
        refused_at = clock.now
        while not gate.open_for("token-a"):
            clock.now += 1
        waits.append(clock.now - refused_at)

    assert waits == [10, 20, 30, 30]


def test_a_new_token_is_tried_at_once_and_a_streamed_session_forgets_the_refusals(gate, clock):
    gate.refused("token-a")
    gate.refused("token-a")

    assert gate.open_for("token-b")
    gate.accepted()
    gate.refused("token-a")
    clock.now += 10
    assert gate.open_for("token-a")  # the first refusal's wait again


@pytest.mark.django_db  # it closes the thread's stale connections first: with another test's left open, it may touch it
def test_a_session_that_cannot_be_read_is_none_and_logged(caplog):
    def unreadable(tenant_slug: str) -> str:
        raise RuntimeError(f"no database for {tenant_slug}")

    with caplog.at_level(logging.ERROR, logger=logger.name):
        assert session_read(unreadable, "acme", logger=logger, stream="Kite stream") is None
        assert session_read(lambda tenant_slug: f"{tenant_slug}'s", "acme", logger=logger, stream="Kite stream") == (
            "acme's"
        )

    assert [record.message for record in caplog.records] == ["Kite stream could not read its session"]
