"""Properties of the quote service under faults: whatever the asks, the clock, the prices and the broker's failures,
every quote handed out is a price the broker gave at its `as_of`, `live` exactly while fresh, never older than
the stale period, never for an instrument the broker does not know; and with a healthy broker every known
instrument asked for is live. Paper fills take their prices from here. Kite's quotes and Schwab's alike."""

import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest
import requests
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.adapters import kite_limits
from brokers.adapters.errors import BrokerError
from brokers.adapters.schwab.client import rate_budgets
from brokers.tests.schwab_link_steps import schwab_market_data_link
from market.quotes import FRESH_SECONDS, MarketDataUnavailable, QuoteService
from market.tests.quote_steps import Clock
from thor import ratelimit

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Venue:
    """One broker's quotes under test: its sandbox's fault name and path, its instruments and fresh period."""

    broker: str
    path: str
    known: tuple[str, ...]
    fresh: float

    @property
    def names(self) -> list[str]:
        exchange = self.known[0].partition(":")[0]
        return [*self.known, f"{exchange}:NOSUCHSYMBOL"]


KITE = Venue("kite", "/quote", ("NSE:INFY", "NSE:SBIN", "NSE:TCS"), FRESH_SECONDS)
# THOR_SCHWAB_QUOTES_PER_MINUTE is 60 in the Schwab property: one call a second, as Kite's.
SCHWAB = Venue("schwab", "/marketdata/v1/quotes", ("NASDAQ:AAPL", "NASDAQ:MSFT", "NYSE:JPM"), 1.0)


def steps(venue: Venue):
    return st.lists(
        st.one_of(
            st.tuples(st.just("ask"), st.sets(st.sampled_from(venue.names), min_size=1)),
            st.tuples(st.just("wait"), st.sampled_from([0.25, 0.5, venue.fresh, 30.0, 400.0])),
            st.tuples(st.just("pin"), st.sampled_from(venue.known), st.integers(min_value=100, max_value=5000)),
            st.tuples(st.just("fail"), st.sampled_from(["5xx", "drop", "429"]), st.integers(1, 3)),
        ),
        min_size=1,
        max_size=12,
    )


def pin(sandbox, name: str, price: int) -> None:
    requests.post(f"{sandbox.url}/_sandbox/prices", json={name: price}, timeout=5).raise_for_status()


def faults_queued(sandbox) -> bool:
    return bool(requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json())


def price_at(pins: list[tuple[float, Decimal]], moment: float) -> Decimal:
    """The price pinned last at or before `moment`."""
    return [price for at, price in pins if at <= moment][-1]


def check_every_quote(venue: Venue, connection, sandbox, monkeypatch, sequence) -> None:
    """Run the sequence against a fresh service of `connection`, checking every answer as the module says."""
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()
    clock = Clock()
    # A scope of its own each example: nothing cached by an earlier one.
    feed = QuoteService.of(connection).feed
    service = QuoteService(scope=f"property-{uuid.uuid4().hex}", connect=lambda: connection, clock=clock, feed=feed)
    assert feed.fresh_seconds == venue.fresh
    calls: list[tuple[float, bool]] = []
    call = service._call

    def recorded(connection, batch):
        try:
            answer = call(connection, batch)
        except BrokerError:
            calls.append((clock.now, False))
            raise
        calls.append((clock.now, True))
        return answer

    monkeypatch.setattr(service, "_call", recorded)
    pins: dict[str, list[tuple[float, Decimal]]] = {}
    for number, name in enumerate(venue.known):
        pin(sandbox, name, 1000 + number)
        pins[name] = [(clock.now, Decimal(1000 + number))]

    for step in sequence:
        # A step takes a moment, so a pin and a quote never share an instant.
        clock.now += 0.001
        if step[0] == "wait":
            clock.now += step[1]
        elif step[0] == "pin":
            pin(sandbox, step[1], step[2])
            pins[step[1]].append((clock.now, Decimal(step[2])))
        elif step[0] == "fail":
            fault = {"broker": venue.broker, "kind": step[1], "path": venue.path, "count": step[2]}
            requests.post(f"{sandbox.url}/_sandbox/faults", json=fault, timeout=5).raise_for_status()
        else:
            asked = step[1]
            healthy = not faults_queued(sandbox) and all(ok for at, ok in calls if clock.now - at < venue.fresh)
            calls_before = len(calls)
            try:
                answer = service.quotes(sorted(asked))
            except MarketDataUnavailable:
                failed_now = any(not ok for _, ok in calls[calls_before:])
                failed_lately = any(not ok for at, ok in calls if clock.now - at < venue.fresh)
                assert failed_now or failed_lately, "unavailable without a failure"
                assert not healthy
                continue
            assert set(answer) <= asked & set(venue.known)
            for name, quote in answer.items():
                as_of = quote.as_of.timestamp()
                age = clock.now - as_of
                # as_of is a datetime, to the microsecond: a hair either side of the clock's float.
                assert -1e-5 < age < django_settings.THOR_LIVE_STALE_SECONDS
                at_the_boundary = abs(age - venue.fresh) < 1e-5  # which side, as_of's microseconds cannot say
                assert at_the_boundary or quote.source == ("live" if age < venue.fresh else "stale"), (name, age)
                assert quote.last_price == price_at(pins[name], as_of)
                assert quote.name == name
                if venue is KITE:
                    assert quote.bids and quote.asks  # Kite's book; Schwab's quote has none
            if healthy:
                assert {name: quote.source for name, quote in answer.items()} == dict.fromkeys(
                    asked & set(venue.known), "live"
                )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
@given(sequence=steps(KITE))
def test_every_quote_is_a_price_the_broker_gave_at_its_as_of(market_data, sandbox, monkeypatch, sequence):
    monkeypatch.setitem(kite_limits.RATE_LIMITS, "quote", 1000.0)  # the budget has its own tests
    check_every_quote(KITE, market_data, sandbox, monkeypatch, sequence)


@pytest.fixture
def schwab_market_data(schwab_sandbox, tenant, settings):
    settings.THOR_SCHWAB_QUOTES_PER_MINUTE = 60
    settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 100_000  # the budget has its own tests
    settings.THOR_SCHWAB_READ_RETRIES = 0  # a failed call fails (no backoff slept), as Kite's
    return schwab_market_data_link(schwab_sandbox, tenant)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps(SCHWAB))
def test_every_us_quote_is_a_price_schwab_gave_at_its_as_of(schwab_market_data, schwab_sandbox, monkeypatch, sequence):
    # Each example starts with the app's whole quote share (sixty calls; an example makes at most two a step): the
    # share is spent on the real clock, so examples run back to back would empty it and fail calls for want of it.
    (quotes,) = [budget for budget in rate_budgets(schwab_market_data.app_id) if budget.bucket.endswith(":quotes")]
    ratelimit.refill(quotes.bucket)
    check_every_quote(SCHWAB, schwab_market_data, schwab_sandbox, monkeypatch, sequence)
