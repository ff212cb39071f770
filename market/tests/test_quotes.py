"""The quote service against the broker sandbox's Kite over real HTTP (which counts the calls), through the tenant's
market-data connection: batched, budgeted across processes, cached, one call for many askers, stale when the
broker fails, and closed to hostile input."""

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from brokers.adapters import kite_limits
from brokers.tests.sandbox_fixtures import market_data_link, sandbox_calls, sandbox_fault
from market.caches import quotes_lock_key
from market.quotes import (
    FRESH_SECONDS,
    MAX_INSTRUMENTS,
    MarketDataUnavailable,
    Patience,
    QuoteService,
    TooManyInstruments,
    quote_service,
)
from market.tests.quote_steps import Clock, asked_at_once
from thor import coordination

pytestmark = pytest.mark.django_db

PINNED = {"NSE:INFY": 1512.35, "NSE:SBIN": 801.5}


def quote_calls(sandbox) -> int:
    return sandbox_calls(sandbox, "GET /quote")


@pytest.fixture
def market(market_data, sandbox):
    requests.post(f"{sandbox.url}/_sandbox/prices", json=PINNED, timeout=5).raise_for_status()
    return market_data


@pytest.fixture
def unbudgeted(monkeypatch):
    """An app whose quote budget never runs out within a test: what is under test is not the budget."""
    monkeypatch.setitem(kite_limits.RATE_LIMITS, "quote", 1000.0)


@pytest.mark.usefixtures("unbudgeted")
class TestQuotes:
    def test_each_quote_says_when_and_where_it_came_from_and_keeps_the_book(self, market, sandbox):
        clock = Clock()

        quotes = QuoteService.of(market, clock=clock).quotes(["NSE:INFY", "NSE:SBIN"])

        infy = quotes["NSE:INFY"]
        assert (infy.last_price, infy.source) == (Decimal("1512.35"), "live")
        assert infy.as_of == datetime.fromtimestamp(clock.now, UTC)
        assert len(infy.bids) == len(infy.asks) == 5
        assert infy.bids[0].price < infy.last_price < infy.asks[0].price
        assert all(level.quantity > 0 for level in (*infy.bids, *infy.asks))

    def test_six_hundred_instruments_are_two_calls_of_at_most_five_hundred(self, market, sandbox):
        names = ["NSE:INFY", *(f"NSE:NOSUCH{number}" for number in range(599))]
        before = quote_calls(sandbox)

        quotes = QuoteService.of(market, clock=Clock()).quotes(names)

        # The sandbox refuses a call of more than 500 instruments: two calls answered means two of at most 500.
        assert quote_calls(sandbox) - before == 2
        assert set(quotes) == {"NSE:INFY"}

    def test_quotes_of_an_ask_of_several_calls_are_all_live_however_long_the_budget_made_it_wait(
        self, market, sandbox, monkeypatch
    ):
        clock = Clock()
        service = QuoteService.of(market, clock=clock)
        call = service._call

        def call_a_period_later(connection, batch):
            clock.now += FRESH_SECONDS  # each call waits a budget period for its turn
            return call(connection, batch)

        monkeypatch.setattr(service, "_call", call_a_period_later)
        names = ["NSE:INFY", *(f"NSE:NOSUCH{number}" for number in range(599)), "NSE:SBIN"]

        quotes = service.quotes(names)

        assert {name: quote.source for name, quote in quotes.items()} == {"NSE:INFY": "live", "NSE:SBIN": "live"}

    def test_a_second_ask_within_the_fresh_period_is_answered_from_the_cache_by_any_instance(self, market, sandbox):
        clock = Clock()
        QuoteService.of(market, clock=clock).quotes(["NSE:INFY"])
        before = quote_calls(sandbox)

        clock.now += FRESH_SECONDS / 2
        again = QuoteService.of(market, clock=clock).quotes(["NSE:INFY"])

        assert quote_calls(sandbox) == before
        assert again["NSE:INFY"].source == "live"
        clock.now += FRESH_SECONDS
        QuoteService.of(market, clock=clock).quotes(["NSE:INFY"])
        assert quote_calls(sandbox) == before + 1

    def test_a_call_with_room_also_quotes_what_was_asked_lately_and_what_the_caller_names(self, market, sandbox):
        clock = Clock()
        service = QuoteService.of(market, clock=clock)
        service.quotes(["NSE:SBIN"])
        clock.now += FRESH_SECONDS
        service.quotes(["NSE:INFY"], also=lambda: ["NSE:TCS"])
        before = quote_calls(sandbox)

        both = service.quotes(["NSE:SBIN", "NSE:TCS"])

        assert quote_calls(sandbox) == before
        assert {quote.source for quote in both.values()} == {"live"}

    def test_when_the_broker_fails_the_last_good_quote_is_handed_out_stale(self, market, sandbox):
        clock = Clock()
        service = QuoteService.of(market, clock=clock)
        first = service.quotes(["NSE:INFY"])["NSE:INFY"]
        sandbox_fault(sandbox, kind="5xx", path="/quote")
        clock.now += 60

        stale = service.quotes(["NSE:INFY", "NSE:SBIN"])

        assert set(stale) == {"NSE:INFY"}
        assert (stale["NSE:INFY"].source, stale["NSE:INFY"].as_of) == ("stale", first.as_of)
        assert stale["NSE:INFY"].last_price == first.last_price
        with pytest.raises(MarketDataUnavailable):
            service.quotes(["NSE:SBIN"])  # nothing kept: no quote to hand out

    def test_a_failure_keeps_readers_off_the_broker_for_the_fresh_period(self, market, sandbox):
        clock = Clock()
        service = QuoteService.of(market, clock=clock)
        service.quotes(["NSE:INFY"])
        sandbox_fault(sandbox, kind="5xx", path="/quote", count=1)
        clock.now += FRESH_SECONDS
        service.quotes(["NSE:INFY"])
        tried = quote_calls(sandbox)

        assert service.quotes(["NSE:INFY"])["NSE:INFY"].source == "stale"
        assert quote_calls(sandbox) == tried
        clock.now += FRESH_SECONDS
        assert service.quotes(["NSE:INFY"])["NSE:INFY"].source == "live"

    def test_without_a_market_data_connection_nothing_is_asked(self, tenant, other_tenant, sandbox):
        market_data_link(sandbox, other_tenant)  # another tenant's is never used
        before = quote_calls(sandbox)

        with pytest.raises(MarketDataUnavailable):
            quote_service(tenant=tenant).quotes(["NSE:INFY"])

        assert quote_calls(sandbox) == before

    def test_a_cached_answer_costs_no_query(self, market, tenant, django_assert_num_queries):
        quote_service(tenant=tenant).quotes(["NSE:INFY"])

        with django_assert_num_queries(0):
            assert quote_service(tenant=tenant).quotes(["NSE:INFY"])["NSE:INFY"].source == "live"


@pytest.mark.usefixtures("unbudgeted")
class TestHostileInput:
    def test_unknown_instruments_are_left_out_and_asked_once_a_period(self, market, sandbox):
        service = QuoteService.of(market, clock=Clock())
        before = quote_calls(sandbox)

        answers = [service.quotes(["NSE:NOSUCHSYMBOL", "BSE:ALSONOT"]) for _ in range(3)]

        assert answers == [{}, {}, {}]
        assert quote_calls(sandbox) - before == 1

    @pytest.mark.parametrize(
        "name",
        [
            "INFY",
            "NSE:",
            ":INFY",
            "nse:INFY",
            "NSE:INFY\r\nX-Evil: 1",
            "NSE:INFY&i=NSE:SBIN",
            "NSE:" + "A" * 65,
            "NSE:'; DROP TABLE market_instrument; --",
            "NSE:../../_sandbox/faults",
            "",
            None,
            42,
        ],
    )
    def test_a_malformed_name_is_left_out_without_asking_the_broker(self, market, sandbox, name):
        before = quote_calls(sandbox)

        assert QuoteService.of(market, clock=Clock()).quotes([name]) == {}
        assert quote_calls(sandbox) == before

    def test_a_huge_list_is_refused_before_anything_is_asked(self, market, sandbox):
        before = quote_calls(sandbox)

        with pytest.raises(TooManyInstruments) as refused:
            QuoteService.of(market, clock=Clock()).quotes(f"NSE:S{number}" for number in range(MAX_INSTRUMENTS + 1))

        assert refused.value.status_code == 400
        assert quote_calls(sandbox) == before

    def test_a_repeated_name_is_asked_once(self, market, sandbox):
        before = quote_calls(sandbox)

        quotes = QuoteService.of(market, clock=Clock()).quotes(["NSE:INFY"] * MAX_INSTRUMENTS)

        assert list(quotes) == ["NSE:INFY"]
        assert quote_calls(sandbox) - before == 1


class TestBudget:
    """Kite takes one quote call a second per app: two service instances (two processes) share one budget in
    Redis, each call waiting at most THOR_KITE_RATE_WAIT for its turn."""

    def test_two_processes_make_one_call_a_second_between_them(self, market, sandbox, settings, time_passes):
        settings.THOR_KITE_RATE_WAIT = 0
        first, second = QuoteService.of(market), QuoteService.of(market)
        before = quote_calls(sandbox)

        first.quotes(["NSE:INFY"])
        shared = second.quotes(["NSE:INFY"])  # the first one's quote, from the shared cache
        with pytest.raises(MarketDataUnavailable):
            second.quotes(["NSE:SBIN"])  # the second's own call: the app's budget for this second is spent

        assert shared["NSE:INFY"].source == "live"
        assert quote_calls(sandbox) - before == 1
        time_passes(1 / kite_limits.RATE_LIMITS["quote"])
        assert second.quotes(["NSE:SBIN"])["NSE:SBIN"].source == "live"
        assert quote_calls(sandbox) - before == 2


def test_many_askers_at_once_make_one_upstream_call(market, sandbox, unbudgeted):
    askers, clock = 8, Clock()  # a clock that stands still: however slow the threads, the first call stays fresh
    before = quote_calls(sandbox)

    answers, errors = asked_at_once(
        lambda: QuoteService.of(market, clock=clock).quotes(["NSE:INFY", "NSE:SBIN"]), askers
    )

    assert errors == []
    assert quote_calls(sandbox) - before == 1
    assert len(answers) == askers
    assert {answer["NSE:INFY"].last_price for answer in answers} == {Decimal("1512.35")}


class TestPatience:
    """A caller that can go on without a quote (an order's price band) says how little it may wait: a moment for
    another reader's call, never for the budget; a kept quote may serve it longer than the fresh period."""

    IMPATIENT = Patience(lock_wait=0.2, call_without_lock=False, wait_for_budget=False, serves_seconds=2.0)

    def test_a_kept_quote_serves_an_impatient_reader_past_the_fresh_period_marked_stale(
        self, market, sandbox, unbudgeted
    ):
        clock = Clock()
        first = QuoteService.of(market, clock=clock).quotes(["NSE:INFY"])["NSE:INFY"]
        before = quote_calls(sandbox)

        clock.now += 1.5 * FRESH_SECONDS
        kept = QuoteService.of(market, clock=clock).quotes(["NSE:INFY"], patience=self.IMPATIENT)["NSE:INFY"]

        assert quote_calls(sandbox) == before
        assert (kept.source, kept.as_of) == ("stale", first.as_of)
        clock.now += 2.0
        assert (
            QuoteService.of(market, clock=clock).quotes(["NSE:INFY"], patience=self.IMPATIENT)["NSE:INFY"].source
            == "live"
        )
        assert quote_calls(sandbox) == before + 1

    def test_an_unpadded_call_asks_only_for_what_its_reader_named(self, market, sandbox, unbudgeted):
        clock = Clock()
        service = QuoteService.of(market, clock=clock)
        service.quotes(["NSE:SBIN"])
        clock.now += FRESH_SECONDS

        service.quotes(["NSE:INFY"], also=lambda: ["NSE:TCS"], patience=replace(self.IMPATIENT, pad=False))
        before = quote_calls(sandbox)
        service.quotes(["NSE:SBIN"])
        service.quotes(["NSE:TCS"])

        assert quote_calls(sandbox) == before + 2

    def test_a_lock_held_elsewhere_answers_what_is_kept_after_the_short_wait_without_a_call(
        self, market, sandbox, unbudgeted
    ):
        clock = Clock()
        service = QuoteService.of(market, clock=clock)
        service.quotes(["NSE:INFY"])
        clock.now += 60
        before = quote_calls(sandbox)

        with coordination.single_flight(quotes_lock_key(service.scope), timeout=30, wait=1) as held:
            started = time.monotonic()
            kept = service.quotes(["NSE:INFY"], patience=self.IMPATIENT)
            with pytest.raises(MarketDataUnavailable):
                service.quotes(["NSE:SBIN"], patience=self.IMPATIENT)  # nothing kept
            waited = time.monotonic() - started

        assert held
        assert kept["NSE:INFY"].source == "stale"
        assert quote_calls(sandbox) == before
        assert waited < 2 * self.IMPATIENT.lock_wait + 1.0
        assert service.quotes(["NSE:SBIN"])["NSE:SBIN"].source == "live"  # nothing marked failed

    def test_a_patient_reader_waits_out_a_lock_held_elsewhere_as_before(self, market, sandbox, unbudgeted):
        service = QuoteService.of(market, clock=Clock())
        lock = quotes_lock_key(service.scope)
        holder = threading.Thread(target=hold_for, args=(lock, 0.5))
        holder.start()
        time.sleep(0.1)

        quotes = service.quotes(["NSE:INFY"])
        holder.join()

        assert quotes["NSE:INFY"].source == "live"

    def test_a_spent_budget_answers_an_impatient_reader_at_once_and_keeps_no_patient_one_off(
        self, market, sandbox, settings
    ):
        settings.THOR_KITE_RATE_WAIT = 1.0
        QuoteService.of(market).quotes(["NSE:INFY"])  # the app's quote for this second
        before = quote_calls(sandbox)
        started = time.monotonic()

        with pytest.raises(MarketDataUnavailable):
            QuoteService.of(market).quotes(["NSE:SBIN"], patience=self.IMPATIENT)

        assert time.monotonic() - started < 0.5
        assert quote_calls(sandbox) == before
        # Not a failure of the broker: a reader that waits for the budget gets its turn within the second.
        assert QuoteService.of(market).quotes(["NSE:SBIN"])["NSE:SBIN"].source == "live"
        assert quote_calls(sandbox) == before + 1

    def test_without_a_market_data_connection_an_impatient_reader_has_none_either(self, tenant, sandbox):
        before = quote_calls(sandbox)

        with pytest.raises(MarketDataUnavailable):
            quote_service(tenant=tenant).quotes(["NSE:INFY"], patience=self.IMPATIENT)

        assert quote_calls(sandbox) == before


def hold_for(lock: str, seconds: float) -> None:
    with coordination.single_flight(lock, timeout=30, wait=1):
        time.sleep(seconds)
