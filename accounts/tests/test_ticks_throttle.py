"""The socket's price throttle (accounts.ticks) on a clock the test moves."""

import pytest

from accounts.ticks import Throttle


def test_the_throttle_lets_one_send_through_a_period(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("accounts.ticks.clock", lambda: now[0])
    throttle = Throttle(0.25)
    assert throttle.wait() == 0
    throttle.sent()
    now[0] += 0.1
    assert throttle.wait() == pytest.approx(0.15)
    now[0] += 0.15
    assert throttle.wait() == 0
