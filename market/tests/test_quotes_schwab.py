"""US quotes (NASDAQ, NYSE) come through the tenant's Schwab market-data connection, against the broker sandbox's
Schwab over real HTTP (which counts the calls), with everything Kite's quotes have: batched, budgeted across
processes, cached, one call for many askers, stale when Schwab fails or the connection is gone, and closed to
hostile input. Indian instruments still come through Kite, in the same ask."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from brokers.models import BrokerConnection
from brokers.tests.sandbox_fixtures import sandbox_calls
from brokers.tests.schwab_link_steps import schwab_fault, schwab_market_data_link
from market.quotes import SCHWAB_FEED, MarketDataUnavailable, QuoteService, quote_service
from market.tests.quote_steps import Clock, asked_at_once

pytestmark = pytest.mark.django_db

PINNED = {"NASDAQ:AAPL": 190.25, "NASDAQ:MSFT": 410.5, "NYSE:JPM": 201.75}
QUOTES = "GET /marketdata/v1/quotes"


def quote_calls(sandbox) -> int:
    return sandbox_calls(sandbox, QUOTES)


def fresh() -> float:
    return SCHWAB_FEED.fresh_seconds


@pytest.fixture
def unbudgeted(settings):
    """A quote share that never runs out within a test (what is under test is not the budget), and a fresh
    period of one second."""
    settings.THOR_SCHWAB_QUOTES_PER_MINUTE = 60
    settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 10_000


@pytest.fixture
def us_market(schwab_sandbox, tenant):
    """Tenant acme's Schwab market-data connection at the sandbox, with US prices pinned there."""
    connection = schwab_market_data_link(schwab_sandbox, tenant)
    requests.post(f"{schwab_sandbox.url}/_sandbox/prices", json=PINNED, timeout=5).raise_for_status()
    return connection


@pytest.mark.usefixtures("unbudgeted")
class TestUsQuotes:
    def test_a_us_quote_comes_through_schwab_saying_when_and_where_it_came_from(self, us_market, tenant):
        clock = Clock()

        quotes = quote_service(tenant=tenant, clock=clock).quotes(["NASDAQ:AAPL", "NYSE:JPM"])

        aapl = quotes["NASDAQ:AAPL"]
        assert (aapl.exchange, aapl.symbol, aapl.last_price, aapl.source) == (
            "NASDAQ",
            "AAPL",
            Decimal("190.25"),
            "live",
        )
        assert aapl.as_of == datetime.fromtimestamp(clock.now, UTC)
        assert quotes["NYSE:JPM"].last_price == Decimal("201.75")

    def test_the_market_data_login_is_the_tenants_own_not_a_customers(self, us_market):
        assert us_market.user.email == "market-data@acme.tenant.invalid" and not us_market.user.is_active
        assert us_market.app.owner_id is None and us_market.status == BrokerConnection.Status.ACTIVE

    def test_one_ask_mixing_indian_and_us_instruments_goes_to_each_broker_once(
        self, us_market, market_data, sandbox, schwab_sandbox, tenant
    ):
        requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1512.35}, timeout=5).raise_for_status()
        kite_before, schwab_before = sandbox_calls(sandbox, "GET /quote"), quote_calls(schwab_sandbox)

        quotes = quote_service(tenant=tenant, clock=Clock()).quotes(["NSE:INFY", "NASDAQ:AAPL"])

        assert {name: quote.last_price for name, quote in quotes.items()} == {
            "NSE:INFY": Decimal("1512.35"),
            "NASDAQ:AAPL": Decimal("190.25"),
        }
        assert sandbox_calls(sandbox, "GET /quote") - kite_before == 1
        assert quote_calls(schwab_sandbox) - schwab_before == 1

    def test_six_hundred_symbols_are_two_calls_of_at_most_five_hundred(self, us_market, schwab_sandbox, tenant):
        names = ["NASDAQ:AAPL", *(f"NYSE:NOSUCH{number}" for number in range(599))]
        before = quote_calls(schwab_sandbox)

        quotes = quote_service(tenant=tenant, clock=Clock()).quotes(names)

        # The sandbox refuses a call of more than 500 symbols: two calls answered means two of at most 500.
        assert quote_calls(schwab_sandbox) - before == 2
        assert set(quotes) == {"NASDAQ:AAPL"}

    def test_a_second_ask_within_the_fresh_period_is_answered_from_the_cache_by_any_instance(
        self, us_market, schwab_sandbox
    ):
        clock = Clock()
        QuoteService.of(us_market, clock=clock).quotes(["NASDAQ:AAPL"])
        before = quote_calls(schwab_sandbox)

        clock.now += fresh() / 2
        again = QuoteService.of(us_market, clock=clock).quotes(["NASDAQ:AAPL"])

        assert quote_calls(schwab_sandbox) == before
        assert again["NASDAQ:AAPL"].source == "live"
        clock.now += fresh()
        QuoteService.of(us_market, clock=clock).quotes(["NASDAQ:AAPL"])
        assert quote_calls(schwab_sandbox) == before + 1

    def test_a_call_with_room_also_quotes_the_us_names_asked_lately_and_named_by_the_caller(
        self, us_market, schwab_sandbox, tenant
    ):
        clock = Clock()
        quotes = quote_service(tenant=tenant, clock=clock)
        quotes.quotes(["NASDAQ:MSFT"])
        clock.now += fresh()
        quotes.quotes(["NASDAQ:AAPL"], also=lambda: ["NYSE:JPM", "NSE:INFY"])
        before = quote_calls(schwab_sandbox)

        both = quotes.quotes(["NASDAQ:MSFT", "NYSE:JPM"])

        assert quote_calls(schwab_sandbox) == before
        assert {quote.source for quote in both.values()} == {"live"}


@pytest.mark.usefixtures("unbudgeted")
class TestDegraded:
    def test_when_schwab_fails_the_last_good_quote_is_handed_out_stale(self, us_market, schwab_sandbox, tenant):
        clock = Clock()
        quotes = quote_service(tenant=tenant, clock=clock)
        first = quotes.quotes(["NASDAQ:AAPL"])["NASDAQ:AAPL"]
        schwab_fault(schwab_sandbox, kind="5xx", path="/marketdata/v1/quotes")
        clock.now += 60

        stale = quotes.quotes(["NASDAQ:AAPL", "NASDAQ:MSFT"])

        assert set(stale) == {"NASDAQ:AAPL"}
        assert (stale["NASDAQ:AAPL"].source, stale["NASDAQ:AAPL"].as_of) == ("stale", first.as_of)
        assert stale["NASDAQ:AAPL"].last_price == first.last_price
        with pytest.raises(MarketDataUnavailable):
            quotes.quotes(["NASDAQ:MSFT"])  # nothing kept: no quote to hand out

    def test_a_failure_keeps_readers_off_schwab_for_the_fresh_period(self, us_market, schwab_sandbox, tenant, settings):
        settings.THOR_SCHWAB_READ_RETRIES = 0
        clock = Clock()
        quotes = quote_service(tenant=tenant, clock=clock)
        quotes.quotes(["NASDAQ:AAPL"])
        schwab_fault(schwab_sandbox, kind="5xx", path="/marketdata/v1/quotes", count=1)
        clock.now += fresh()
        quotes.quotes(["NASDAQ:AAPL"])
        tried = quote_calls(schwab_sandbox)

        assert quotes.quotes(["NASDAQ:AAPL"])["NASDAQ:AAPL"].source == "stale"
        assert quote_calls(schwab_sandbox) == tried
        clock.now += fresh()
        assert quotes.quotes(["NASDAQ:AAPL"])["NASDAQ:AAPL"].source == "live"

    def test_a_login_schwab_no_longer_renews_leaves_the_last_good_quotes_stale(self, us_market, schwab_sandbox, tenant):
        clock = Clock()
        quotes = quote_service(tenant=tenant, clock=clock)
        quotes.quotes(["NASDAQ:AAPL"])
        for what in ("access", "refresh"):
            requests.post(f"{schwab_sandbox.url}/_sandbox/schwab/expire", json={"what": what}, timeout=5)
        clock.now += fresh()

        assert quotes.quotes(["NASDAQ:AAPL"])["NASDAQ:AAPL"].source == "stale"
        us_market.refresh_from_db()
        assert us_market.status == BrokerConnection.Status.EXPIRED
        clock.now += fresh()
        with pytest.raises(MarketDataUnavailable):
            quotes.quotes(["NASDAQ:MSFT"])

    def test_without_a_schwab_connection_nothing_is_asked_of_either_broker(
        self, market_data, sandbox, schwab_sandbox, tenant, other_tenant
    ):
        schwab_market_data_link(schwab_sandbox, other_tenant)  # another tenant's is never used
        kite_before, schwab_before = sandbox_calls(sandbox, "GET /quote"), quote_calls(schwab_sandbox)

        with pytest.raises(MarketDataUnavailable):
            quote_service(tenant=tenant).quotes(["NASDAQ:AAPL"])

        assert quote_calls(schwab_sandbox) == schwab_before
        assert sandbox_calls(sandbox, "GET /quote") == kite_before

    def test_a_failing_broker_leaves_the_other_brokers_quotes_in_a_mixed_ask(
        self, us_market, market_data, sandbox, tenant
    ):
        requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1512.35}, timeout=5).raise_for_status()
        us_market.status = BrokerConnection.Status.EXPIRED
        us_market.save(update_fields=["status"])

        quotes = quote_service(tenant=tenant, clock=Clock()).quotes(["NSE:INFY", "NASDAQ:AAPL"])

        assert set(quotes) == {"NSE:INFY"}


@pytest.mark.usefixtures("unbudgeted")
class TestHostileSymbols:
    def test_unknown_symbols_are_left_out_and_asked_once_a_period(self, us_market, schwab_sandbox, tenant):
        quotes = quote_service(tenant=tenant, clock=Clock())
        before = quote_calls(schwab_sandbox)

        answers = [quotes.quotes(["NASDAQ:NOSUCH", "NYSE:ALSONOT"]) for _ in range(3)]

        assert answers == [{}, {}, {}]
        assert quote_calls(schwab_sandbox) - before == 1

    @pytest.mark.parametrize(
        "name",
        [
            "NASDAQ:aapl",
            "NASDAQ:AAPL,MSFT",
            "NASDAQ:AAPL&symbols=MSFT",
            "NASDAQ:AAPL MSFT",
            "NYSE:BRK.B.C",
            "NYSE:" + "A" * 11,
            "NASDAQ:$SPX",
            "NASDAQ:AAPL  240517C00190000",
            "NASDAQ:../../_sandbox/faults",
            "NASDAQ:AAPL\r\nX-Evil: 1",
            "NYSE:'; DROP TABLE market_instrument; --",
        ],
    )
    def test_a_malformed_us_name_is_left_out_without_asking_schwab(self, us_market, schwab_sandbox, tenant, name):
        before = quote_calls(schwab_sandbox)

        assert quote_service(tenant=tenant, clock=Clock()).quotes([name]) == {}
        assert quote_calls(schwab_sandbox) == before

    def test_a_class_share_is_quoted(self, us_market, schwab_sandbox, tenant):
        requests.post(f"{schwab_sandbox.url}/_sandbox/prices", json={"NYSE:BRK.B": 420.0}, timeout=5)

        quotes = quote_service(tenant=tenant, clock=Clock()).quotes(["NYSE:BRK.B"])

        assert quotes["NYSE:BRK.B"].last_price == Decimal("420")


class TestBudget:
    """Schwab's quotes take their app's quote share (THOR_SCHWAB_QUOTES_PER_MINUTE): two service instances (two
    processes) share one budget in Redis, each call waiting at most THOR_SCHWAB_RATE_WAIT for its turn."""

    def test_two_processes_share_the_apps_quote_share(self, us_market, schwab_sandbox, settings, time_passes):
        settings.THOR_SCHWAB_QUOTES_PER_MINUTE = 1  # one call a minute, a minute's freshness
        first, second = QuoteService.of(us_market), QuoteService.of(us_market)
        before = quote_calls(schwab_sandbox)

        first.quotes(["NASDAQ:AAPL"])
        shared = second.quotes(["NASDAQ:AAPL"])  # the first one's quote, from the shared cache
        with pytest.raises(MarketDataUnavailable):
            second.quotes(["NASDAQ:MSFT"])  # the second's own call: the share for this minute is spent

        assert shared["NASDAQ:AAPL"].source == "live"
        assert quote_calls(schwab_sandbox) - before == 1
        time_passes(60)
        assert second.quotes(["NASDAQ:MSFT"])["NASDAQ:MSFT"].source == "live"
        assert quote_calls(schwab_sandbox) - before == 2


def test_many_askers_at_once_make_one_schwab_call(us_market, schwab_sandbox, unbudgeted):
    askers, clock = 8, Clock()  # a clock that stands still: however slow the threads, the first call stays fresh
    before = quote_calls(schwab_sandbox)

    answers, errors = asked_at_once(
        lambda: QuoteService.of(us_market, clock=clock).quotes(["NASDAQ:AAPL", "NASDAQ:MSFT"]), askers
    )

    assert errors == []
    assert quote_calls(schwab_sandbox) - before == 1
    assert len(answers) == askers
    assert {answer["NASDAQ:AAPL"].last_price for answer in answers} == {Decimal("190.25")}
