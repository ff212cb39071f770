"""Refreshing ahead: a reader that may be served a kept quote past its fresh period (an order's price band) is
answered at once, and the quote is asked for again off its call, so that the next reader finds a young one and
waits for nothing; against the sandbox's Kite over real HTTP, which counts the calls."""

import threading

import pytest
import requests

from brokers.adapters import kite_limits
from brokers.tests.sandbox_fixtures import sandbox_calls, sandbox_fault
from market import quote_refresh
from market.caches import quotes_lock_key
from market.quotes import FRESH_SECONDS, Patience, QuoteService
from market.tests.quote_steps import Clock
from thor import coordination

pytestmark = pytest.mark.django_db

BANDED = Patience(
    lock_wait=0.2, call_without_lock=False, wait_for_budget=False, serves_seconds=2.0, pad=False, refresh_ahead=True
)


def quote_calls(sandbox) -> int:
    return sandbox_calls(sandbox, "GET /quote")


@pytest.fixture
def service(market_data, sandbox, monkeypatch):
    """A tenant's Kite quotes on a clock the test moves, the budget out of the way (not what is under test)."""
    monkeypatch.setitem(kite_limits.RATE_LIMITS, "quote", 1000.0)
    requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1512.35}, timeout=5).raise_for_status()
    yield QuoteService.of(market_data, clock=Clock())
    assert quote_refresh.refresh_wait()


class TestRefreshAhead:
    def test_a_kept_quote_past_its_fresh_period_serves_at_once_and_is_asked_for_again_behind_it(self, service, sandbox):
        first = service.quotes(["NSE:INFY"])["NSE:INFY"]
        service._clock.now += 1.5 * FRESH_SECONDS
        before = quote_calls(sandbox)

        kept = service.quotes(["NSE:INFY"], patience=BANDED)["NSE:INFY"]
        assert kept.as_of == first.as_of
        assert quote_refresh.refresh_wait()

        assert quote_calls(sandbox) == before + 1
        service._clock.now += 0.4 * FRESH_SECONDS  # the kept one would now be too old to serve
        young = service.quotes(["NSE:INFY"], patience=BANDED)["NSE:INFY"]
        assert young.as_of > first.as_of
        assert young.source == "live"
        assert quote_refresh.refresh_wait()
        assert quote_calls(sandbox) == before + 1  # neither inline nor behind: it is fresh

    def test_a_quote_within_its_fresh_period_is_not_asked_for_again(self, service, sandbox):
        service.quotes(["NSE:INFY"])
        service._clock.now += 0.5 * FRESH_SECONDS
        before = quote_calls(sandbox)

        service.quotes(["NSE:INFY"], patience=BANDED)
        assert quote_refresh.refresh_wait()

        assert quote_calls(sandbox) == before

    def test_a_quote_too_old_to_serve_is_asked_for_inline_as_before(self, service, sandbox):
        first = service.quotes(["NSE:INFY"])["NSE:INFY"]
        service._clock.now += 2.0 + FRESH_SECONDS
        before = quote_calls(sandbox)

        answer = service.quotes(["NSE:INFY"], patience=BANDED)["NSE:INFY"]

        assert quote_calls(sandbox) == before + 1
        assert (answer.source, answer.as_of > first.as_of) == ("live", True)

    def test_a_reader_that_does_not_ask_for_it_refreshes_nothing(self, service, sandbox):
        service.quotes(["NSE:INFY"])
        service._clock.now += 1.5 * FRESH_SECONDS
        before = quote_calls(sandbox)

        service.quotes(["NSE:INFY"], patience=Patience(serves_seconds=2.0, pad=False))
        assert quote_refresh.refresh_wait()

        assert quote_calls(sandbox) == before


class TestFaults:
    def test_a_failing_broker_leaves_the_kept_quote_as_it_was(self, service, sandbox):
        first = service.quotes(["NSE:INFY"])["NSE:INFY"]
        service._clock.now += 1.5 * FRESH_SECONDS
        sandbox_fault(sandbox, kind="5xx", path="/quote", count=1)

        kept = service.quotes(["NSE:INFY"], patience=BANDED)["NSE:INFY"]
        assert quote_refresh.refresh_wait()

        assert kept.as_of == first.as_of
        again = service.quotes(["NSE:INFY"], patience=BANDED)["NSE:INFY"]
        assert again.as_of == first.as_of  # the failure kept, nothing lost, no inline call either

    def test_a_lock_held_elsewhere_makes_the_refresh_give_way_without_a_call(self, service, sandbox):
        service.quotes(["NSE:INFY"])
        service._clock.now += 1.5 * FRESH_SECONDS
        before = quote_calls(sandbox)

        with coordination.single_flight(quotes_lock_key(service.scope), timeout=30, wait=1) as held:
            service.quotes(["NSE:INFY"], patience=BANDED)
            assert quote_refresh.refresh_wait()

        assert held
        assert quote_calls(sandbox) == before


class TestPending:
    """The refresher on its own: what is pending is asked once, and only so much may be pending."""

    @pytest.fixture
    def blocked(self):
        """The refresher thread held by a first refresh until the test lets it go."""
        release, started = threading.Event(), threading.Event()

        def hold(names):
            started.set()
            release.wait(5)

        quote_refresh.refresh_ahead("held", ["X:HOLD"], hold)
        assert started.wait(5)
        yield release
        release.set()
        assert quote_refresh.refresh_wait()

    def test_names_already_pending_are_not_asked_twice(self, blocked):
        asked: list[list[str]] = []

        quote_refresh.refresh_ahead("tenant-1", ["NSE:INFY", "NSE:SBIN"], asked.append)
        quote_refresh.refresh_ahead("tenant-1", ["NSE:INFY"], asked.append)
        quote_refresh.refresh_ahead("tenant-2", ["NSE:INFY"], asked.append)  # another scope's are its own

        quote_refresh.refresh_ahead("tenant-1", ["NSE:SBIN", "NSE:TCS"], asked.append)
        blocked.set()
        assert quote_refresh.refresh_wait()

        assert asked == [["NSE:INFY", "NSE:SBIN"], ["NSE:INFY"], ["NSE:TCS"]]

    def test_asked_again_once_the_last_refresh_of_them_ran(self):
        asked: list[list[str]] = []

        quote_refresh.refresh_ahead("tenant-1", ["NSE:INFY"], asked.append)
        assert quote_refresh.refresh_wait()
        quote_refresh.refresh_ahead("tenant-1", ["NSE:INFY"], asked.append)
        assert quote_refresh.refresh_wait()

        assert asked == [["NSE:INFY"], ["NSE:INFY"]]

    def test_at_most_the_setting_s_names_wait(self, blocked, settings):
        settings.THOR_QUOTE_REFRESH_PENDING = 3  # the held name and two more
        asked: list[list[str]] = []

        quote_refresh.refresh_ahead("tenant-1", ["NSE:INFY", "NSE:SBIN"], asked.append)
        quote_refresh.refresh_ahead("tenant-1", ["NSE:TCS"], asked.append)
        blocked.set()
        assert quote_refresh.refresh_wait()

        assert asked == [["NSE:INFY", "NSE:SBIN"]]

    def test_a_refresh_that_raises_is_logged_and_the_names_can_be_asked_again(self, caplog):
        def broken(names):
            raise RuntimeError("https://user:secret@example.invalid")

        quote_refresh.refresh_ahead("tenant-1", ["NSE:INFY"], broken)
        assert quote_refresh.refresh_wait()

        assert "RuntimeError" in caplog.text
        assert "secret" not in caplog.text
        assert ("tenant-1", "NSE:INFY") not in quote_refresh._refresher()[1]

    def test_a_database_connection_that_fails_to_close_does_not_end_the_refresher(self, monkeypatch):
        def failing_close():
            raise RuntimeError("closing failed")

        monkeypatch.setattr(quote_refresh.connections, "close_all", failing_close)
        asked: list[list[str]] = []

        quote_refresh.refresh_ahead("tenant-1", ["NSE:INFY"], asked.append)
        assert quote_refresh.refresh_wait()
        quote_refresh.refresh_ahead("tenant-1", ["NSE:SBIN"], asked.append)
        assert quote_refresh.refresh_wait()

        assert asked == [["NSE:INFY"], ["NSE:SBIN"]]
