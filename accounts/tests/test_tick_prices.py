"""The pieces of real-time P&L that need no socket: the throttle on a clock the test moves, and which price a
REST read of a paper account takes, the market stream's or the quote's."""

import time

import pytest

from accounts.tests.conftest import place
from accounts.ticks import Throttle
from conftest import client_for
from market import caches

INFY = 408065


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


@pytest.fixture
def alice_holds_infy(alice, instrument_master):
    caches.ticks_flush()
    client = client_for(alice)
    assert place(client, quantity=10).status_code == 201  # at the fixed price, 1500.00
    yield client
    caches.ticks_flush()


def rest_last_price(client) -> tuple[str, str]:
    body = client.get("/api/accounts/primary/positions").json()
    return body["data"][0]["last_price"], body["source"]


@pytest.mark.django_db
def test_a_rest_read_takes_the_streams_price_while_it_is_fresh(alice_holds_infy, settings):
    settings.THOR_LIVE_FRESH_SECONDS = 5
    caches.last_prices_write({INFY: "1512.25"})
    assert rest_last_price(alice_holds_infy) == ("1512.2500", "live")

    # The stream went quiet: the quote (newer) is shown again.
    caches.last_prices_write({INFY: "1512.25"}, received_at=time.time() - 6)
    assert rest_last_price(alice_holds_infy) == ("1500.0000", "live")


@pytest.mark.django_db
def test_a_store_that_cannot_be_read_leaves_the_quote(alice_holds_infy, monkeypatch):
    def down(tokens):
        raise ConnectionError("redis://secret@host")

    monkeypatch.setattr("market.selectors.last_prices_read", down)
    assert rest_last_price(alice_holds_infy) == ("1500.0000", "live")
