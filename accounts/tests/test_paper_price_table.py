"""Paper prices in production: one quote table per tenant, refreshed at most once a second for all of its
paper accounts through the tenant's Kite app (here the broker sandbox, which counts the calls), and every
price shown with the time it was quoted: never `live` once older than THOR_LIVE_FRESH_SECONDS."""

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from django.db import connection

from accounts.models import Order, PaperPosition
from accounts.paper import paper_orders_match
from accounts.prices import Prices, Quoted, price_source
from accounts.tests.conftest import place
from accounts.tests.test_paper_prices import link_through_tenant_app
from brokers.tests.sandbox_fixtures import sandbox_calls, sandbox_fault
from conftest import client_for
from identity.tests.factories import UserFactory
from market.quotes import FRESH_SECONDS

PINNED = {"NSE:INFY": 1512.35, "NSE:SBIN": 801.5, "NSE:TCS": 3901.0, "NSE:ITC": 431.25}


def quote_calls(sandbox) -> int:
    return sandbox_calls(sandbox, "GET /quote")


def hold(user, symbol, quantity=10, average_price="1000.00") -> PaperPosition:
    return PaperPosition.objects.create(
        account=user.trading_accounts.get(is_primary=True),
        exchange="NSE",
        symbol=symbol,
        product="CNC",
        quantity=Decimal(quantity),
        average_price=Decimal(average_price),
    )


def positions(client) -> dict:
    response = client.get("/api/accounts/primary/positions")
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.fixture
def kite_prices(sandbox, settings, tenant, bob_client):
    """Paper prices from Kite quotes through a session on the tenant's own app, at pinned sandbox prices."""
    settings.THOR_PAPER_PRICE_SOURCE = "kite"
    requests.post(f"{sandbox.url}/_sandbox/prices", json=PINNED, timeout=5).raise_for_status()
    link_through_tenant_app(bob_client, tenant, "CD5678")
    return sandbox


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_readers_of_one_tenant_make_at_most_one_quote_call_a_second(kite_prices, tenant):
    symbols = ["INFY", "SBIN", "TCS", "ITC"]
    readers = [UserFactory(tenant=tenant) for _ in range(20)]
    for number, reader in enumerate(readers):
        hold(reader, symbols[number % len(symbols)])
    clients = [client_for(reader) for reader in readers]
    barrier = threading.Barrier(len(clients))
    answers, errors = [], []
    calls_before = quote_calls(kite_prices)

    def read(client):
        try:
            barrier.wait()
            for _ in range(3):
                answers.append(positions(client))
        except Exception as error:  # reported below, not lost in the thread
            errors.append(error)
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=read, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started
    calls = quote_calls(kite_prices) - calls_before

    assert errors == []
    assert len(answers) == 60
    assert 1 <= calls <= 1 + int(elapsed)
    assert {answer["source"] for answer in answers} == {"live"}
    for answer in answers:
        [position] = answer["data"]
        assert Decimal(position["last_price"]) == Decimal(str(PINNED[f"NSE:{position['tradingsymbol']}"]))


@pytest.mark.django_db
class TestOneTableForTheTenant:
    def test_readers_within_a_second_share_one_call_for_all_the_tenants_paper_accounts(
        self, kite_prices, alice, alice_client, bob, bob_client
    ):
        hold(alice, "INFY")
        hold(bob, "SBIN")
        calls_before = quote_calls(kite_prices)

        alices, bobs = positions(alice_client), positions(bob_client)

        assert quote_calls(kite_prices) - calls_before == 1
        assert (alices["source"], bobs["source"]) == ("live", "live")
        assert Decimal(bobs["data"][0]["last_price"]) == Decimal("801.5")

    def test_an_instrument_the_table_lacks_is_quoted_within_the_budget(self, kite_prices, alice, alice_client):
        hold(alice, "INFY")
        positions(alice_client)
        calls_before = quote_calls(kite_prices)
        hold(alice, "TCS")

        after = positions(alice_client)

        assert quote_calls(kite_prices) - calls_before == 1
        assert after["source"] == "live"
        assert {row["tradingsymbol"]: Decimal(row["last_price"]) for row in after["data"]} == {
            "INFY": Decimal("1512.35"),
            "TCS": Decimal("3901.0"),
        }

    def test_an_instrument_kite_does_not_know_is_asked_once_a_period_not_on_every_read(
        self, kite_prices, alice, alice_client
    ):
        hold(alice, "NOSUCHSYMBOL", average_price="10.00")
        calls_before = quote_calls(kite_prices)

        reads = [positions(alice_client) for _ in range(3)]

        assert quote_calls(kite_prices) - calls_before == 1
        assert {read["source"] for read in reads} == {"stale"}

    def test_another_tenants_readers_never_see_the_table(self, kite_prices, alice, charlie, charlie_client):
        hold(alice, "INFY")
        hold(charlie, "INFY")

        response = charlie_client.get("/api/accounts/primary/positions")

        assert response.status_code == 503 and response.json()["code"] == "market_data_unavailable"

    def test_instruments_asked_lately_are_quoted_with_the_next_table(
        self, kite_prices, tenant, alice, alice_client, time_passes
    ):
        price_source(tenant=tenant).prices({("NSE", "ITC")})  # an order's price, say: nobody holds ITC
        hold(alice, "INFY")
        time_passes(FRESH_SECONDS)
        positions(alice_client)
        calls_before = quote_calls(kite_prices)

        itc = price_source(tenant=tenant).prices({("NSE", "ITC")})

        assert quote_calls(kite_prices) == calls_before
        assert itc == {("NSE", "ITC"): Decimal("431.25")}

    def test_the_embedded_mode_keeps_table_and_lately_asked_instruments_in_this_process(
        self, kite_prices, tenant, alice, alice_client, bob, bob_client, settings, time_passes
    ):
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        price_source(tenant=tenant).prices({("NSE", "ITC")})
        hold(alice, "INFY")
        hold(bob, "SBIN")
        time_passes(FRESH_SECONDS)  # without Redis, for the table in the cache and the buckets in this process
        calls_before = quote_calls(kite_prices)

        reads = [positions(alice_client), positions(bob_client)]
        itc = price_source(tenant=tenant).prices({("NSE", "ITC")})

        assert quote_calls(kite_prices) - calls_before == 1
        assert [read["source"] for read in reads] == ["live", "live"]
        assert itc == {("NSE", "ITC"): Decimal("431.25")}

    def test_asking_for_nothing_calls_nobody(self, kite_prices, tenant):
        calls_before = quote_calls(kite_prices)

        assert price_source(tenant=tenant).prices(set()) == {}
        assert quote_calls(kite_prices) == calls_before


@pytest.mark.django_db
class TestStalePrices:
    def test_a_price_older_than_the_fresh_period_is_stale_with_its_as_of(
        self, kite_prices, alice, alice_client, settings, time_passes
    ):
        settings.THOR_LIVE_FRESH_SECONDS = 1
        hold(alice, "INFY")
        fresh = positions(alice_client)
        sandbox_fault(kite_prices, kind="5xx", path="/quote")
        time_passes(1.2)  # past the table's refresh period and the prices' fresh period

        old = positions(alice_client)

        assert fresh["source"] == "live"
        assert (old["source"], old["as_of"]) == ("stale", fresh["as_of"])
        assert Decimal(old["data"][0]["last_price"]) == Decimal("1512.35")

    def test_funds_and_holdings_say_so_too(self, kite_prices, alice, alice_client, settings, time_passes):
        settings.THOR_LIVE_FRESH_SECONDS = 1
        hold(alice, "INFY")
        positions(alice_client)
        sandbox_fault(kite_prices, kind="5xx", path="/quote")
        time_passes(1.2)

        funds = alice_client.get("/api/accounts/primary/funds").json()
        holdings = alice_client.get("/api/accounts/primary/holdings").json()

        assert (funds["source"], holdings["source"]) == ("stale", "stale")

    def test_without_any_table_a_failing_kite_is_a_clear_503(self, kite_prices, alice, alice_client):
        hold(alice, "INFY")
        sandbox_fault(kite_prices, kind="5xx", path="/quote")

        response = alice_client.get("/api/accounts/primary/positions")

        assert response.status_code == 503 and response.json()["code"] == "market_data_unavailable"


@pytest.mark.django_db
class TestMissingPrice:
    """A position without a price is shown at its average price as of its last fill, and says `stale`."""

    def test_it_is_never_passed_off_as_live(self, alice, alice_client, settings):
        settings.THOR_PAPER_FIXED_PRICES = {"NSE:INFY": "1500.00"}
        hold(alice, "INFY")
        unpriced = hold(alice, "UNLISTED", average_price="42.00")

        read = positions(alice_client)

        rows = {row["tradingsymbol"]: row for row in read["data"]}
        assert read["source"] == "stale"
        assert datetime.fromisoformat(read["as_of"].replace("Z", "+00:00")) == unpriced.updated_at
        assert (Decimal(rows["UNLISTED"]["last_price"]), Decimal(rows["UNLISTED"]["unrealised_pnl"])) == (
            Decimal("42"),
            Decimal("0"),
        )
        assert Decimal(rows["INFY"]["last_price"]) == Decimal("1500")

    def test_a_closed_position_needs_no_price(self, alice, alice_client, settings):
        settings.THOR_PAPER_FIXED_PRICES = {"NSE:INFY": "1500.00"}
        hold(alice, "INFY")
        hold(alice, "UNLISTED", quantity=0, average_price="42.00")

        assert positions(alice_client)["source"] == "live"

    def test_fixed_prices_are_always_fresh(self, alice, alice_client):
        hold(alice, "INFY")

        assert positions(alice_client)["source"] == "live"


@pytest.mark.django_db
class TestRedisDown:
    def test_each_read_quotes_directly_and_none_fails(self, kite_prices, alice, alice_client, settings):
        hold(alice, "INFY")
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
        calls_before = quote_calls(kite_prices)

        reads = [positions(alice_client) for _ in range(2)]

        assert [read["source"] for read in reads] == ["live", "live"]
        assert quote_calls(kite_prices) - calls_before == 2


class TestPrices:
    """What every price source answers: a mapping of prices, each with the time it was quoted."""

    EARLIER, LATER = datetime(2026, 1, 5, 9, 15, tzinfo=UTC), datetime(2026, 1, 5, 9, 16, tzinfo=UTC)

    def prices(self):
        return Prices(
            {
                ("NSE", "INFY"): Quoted(Decimal("1500.00"), self.LATER),
                ("NSE", "SBIN"): Quoted(Decimal("800.00"), self.EARLIER),
            }
        )

    def test_reads_as_a_mapping_of_prices(self):
        prices = self.prices()

        assert prices[("NSE", "INFY")] == Decimal("1500.00")
        assert prices.get(("NSE", "TCS")) is None and ("NSE", "SBIN") in prices
        assert dict(prices) == {("NSE", "INFY"): Decimal("1500.00"), ("NSE", "SBIN"): Decimal("800.00")}

    def test_as_of_is_the_oldest_quote(self):
        prices = self.prices()

        assert (prices.as_of, prices.as_of_for(("NSE", "INFY"))) == (self.EARLIER, self.LATER)
        assert Prices().as_of is None

    def test_fresh_within_the_fresh_period_only(self, settings):
        settings.THOR_LIVE_FRESH_SECONDS = 30
        prices = self.prices()

        at = self.LATER + timedelta(seconds=30)
        assert (prices.is_fresh(("NSE", "INFY"), now=at), prices.is_fresh(("NSE", "SBIN"), now=at)) == (True, False)
        assert prices.is_fresh(("NSE", "TCS"), now=self.LATER) is False

    def test_fresh_keeps_only_the_fresh_prices(self, settings):
        settings.THOR_LIVE_FRESH_SECONDS = 30

        fresh = self.prices().fresh(now=self.LATER + timedelta(seconds=30))

        assert (dict(fresh), fresh.as_of) == ({("NSE", "INFY"): Decimal("1500.00")}, self.LATER)


NOT_PRICES = ["0", "0.00", "-1500.00", "NaN", "Infinity", "-Infinity"]


class TestAPriceThatIsNoPrice:
    """A quote of zero (Kite's for a contract that has not traded), a negative one, or one that is no number is no
    price: the instrument is unpriced, as if the source had not quoted it. Nothing fills at it, nothing is marked at
    it, and a position is not valued at it."""

    @pytest.mark.parametrize("price", NOT_PRICES)
    def test_prices_leave_it_out(self, price):
        now = datetime(2026, 1, 5, 9, 15, tzinfo=UTC)
        prices = Prices({("NSE", "INFY"): Quoted(Decimal(price), now), ("NSE", "SBIN"): Quoted(Decimal("800"), now)})

        assert dict(prices) == {("NSE", "SBIN"): Decimal("800")}
        assert ("NSE", "INFY") not in prices.fresh(now=now)

    @pytest.mark.django_db
    @pytest.mark.parametrize("price", ["0", "-5.00", "NaN"])
    def test_a_market_order_is_refused_for_want_of_a_price_and_nothing_is_stored(
        self, alice, alice_client, settings, price
    ):
        settings.THOR_PAPER_FIXED_PRICES = {"NSE:INFY": price}
        cash = alice.trading_accounts.get(is_primary=True).cash

        response = place(alice_client, key="free-shares")

        assert response.status_code == 400, response.json()
        assert response.json()["errors"] == {"tradingsymbol": ["No market price available."]}
        assert not Order.objects.exists() and not PaperPosition.objects.exists()
        assert alice.trading_accounts.get(is_primary=True).cash == cash

    @pytest.mark.django_db
    def test_a_limit_order_rests_until_a_real_price_crosses_it(self, alice, alice_client, settings):
        settings.THOR_PAPER_FIXED_PRICES = {"NSE:INFY": {"last_price": "0", "bids": [], "asks": []}}
        response = place(alice_client, order_type="LIMIT", price="1500.00")
        assert (response.status_code, response.json()["status"]) == (201, "OPEN"), response.json()

        paper_orders_match()
        assert Order.objects.get(pk=response.json()["id"]).status == "OPEN"

        settings.THOR_PAPER_FIXED_PRICES = {"NSE:INFY": "1499.00"}
        paper_orders_match()
        order = Order.objects.get(pk=response.json()["id"])
        assert (order.status, order.average_price) == ("COMPLETE", Decimal("1499.00"))

    @pytest.mark.django_db
    def test_a_held_position_is_shown_at_its_average_price_and_stale(self, alice, alice_client, settings):
        settings.THOR_PAPER_FIXED_PRICES = {"NSE:INFY": "0"}
        hold(alice, "INFY", quantity=-10, average_price="1500.00")  # a short: at 0 it would look 15,000 up

        read = positions(alice_client)

        row = read["data"][0]
        assert read["source"] == "stale"
        assert (Decimal(row["last_price"]), Decimal(row["unrealised_pnl"])) == (Decimal("1500"), Decimal("0"))
