"""A US paper account trades any US equity Schwab lists, not only the seed's: a symbol the master lacks is looked
up through the tenant's Schwab connection (the sandbox, over real HTTP), stored, and never asked again; an
unknown one is a 400 that asks Schwab once; hostile symbols are refused before any call (market.instrument_search)."""

from decimal import Decimal

import pytest
import requests
from django.core.cache import cache

from accounts.models import Order
from accounts.services import trading_account_create_paper
from accounts.tests.conftest import order_body, place
from brokers.tests.schwab_link_steps import schwab_fault, seeded_connections
from market import caches
from market.instrument_search import FAILED_SECONDS, us_instrument_lookup
from market.loading import instruments_load
from market.models import Instrument
from market.sources import us_seed_rows
from market.us_tokens import us_token

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

SEARCH = "GET /marketdata/v1/instruments"


def searches(sandbox) -> int:
    return requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["by_path"].get(SEARCH, 0)


@pytest.fixture
def us_market(schwab_sandbox, schwab_app, alice, fixed_prices):
    """The US seed in the master, Alice's USD paper account, and her login on the tenant's Schwab app: the
    tenant's Schwab connection, which lookups go through."""
    instruments_load(rows=us_seed_rows(), source=Instrument.Source.SCHWAB, complete=False)
    [connection] = seeded_connections(schwab_sandbox, schwab_app, [alice])
    fixed_prices.update({"NASDAQ:TSLA": "250.00", "NYSE:BRK.B": "420.00"})
    requests.delete(f"{schwab_sandbox.url}/_sandbox/stats", timeout=5).raise_for_status()
    return {"account": trading_account_create_paper(user=alice, currency="USD"), "connection": connection}


def test_a_symbol_beyond_the_seed_is_looked_up_once_stored_and_filled(alice_client, us_market, schwab_sandbox):
    account = us_market["account"]
    assert not Instrument.objects.filter(tradingsymbol="TSLA").exists()

    first = place(alice_client, account=account.pk, tradingsymbol="TSLA", exchange="NASDAQ", quantity=2)
    again = place(alice_client, account=account.pk, tradingsymbol="TSLA", exchange="NASDAQ", quantity=1)

    assert first.status_code == 201, first.json()
    assert (first.json()["status"], again.json()["status"]) == ("COMPLETE", "COMPLETE")
    tsla = Instrument.objects.get(exchange="NASDAQ", tradingsymbol="TSLA")
    assert (tsla.source, tsla.name, tsla.instrument_type, tsla.lot_size, tsla.multiplier, tsla.currency) == (
        "schwab",
        "TESLA INC",
        "EQ",
        1,
        1,
        "USD",
    )
    assert tsla.tick_size == Decimal("0.01") and tsla.tradable and not tsla.expired
    assert tsla.instrument_token == us_token("TSLA")
    assert searches(schwab_sandbox) == 1
    account.refresh_from_db()
    assert account.cash == Decimal("100000.00") - 3 * Decimal("250.00")


def test_a_seeded_symbol_asks_nothing(alice_client, us_market, schwab_sandbox):
    response = place(alice_client, account=us_market["account"].pk, tradingsymbol="AAPL", exchange="NASDAQ", quantity=1)

    assert response.status_code == 201, response.json()
    assert searches(schwab_sandbox) == 0


def test_an_unknown_symbol_is_a_400_and_schwab_is_asked_once(alice_client, us_market, schwab_sandbox):
    for _ in range(3):
        response = place(alice_client, account=us_market["account"].pk, tradingsymbol="ZZZZ", exchange="NYSE")

        assert response.status_code == 400
        assert response.json()["errors"]["tradingsymbol"] == [
            "Unknown instrument NYSE:ZZZZ: Schwab lists no such symbol."
        ]
    assert searches(schwab_sandbox) == 1
    assert not Order.objects.exists() and not Instrument.objects.filter(tradingsymbol="ZZZZ").exists()


def test_a_symbol_on_the_other_exchange_is_refused_naming_its_exchange(alice_client, us_market, schwab_sandbox):
    account = us_market["account"].pk

    wrong = place(alice_client, account=account, tradingsymbol="BRK.B", exchange="NASDAQ", quantity=1)
    right = place(alice_client, account=account, tradingsymbol="BRK.B", exchange="NYSE", quantity=1)

    assert wrong.status_code == 400
    assert wrong.json()["errors"]["tradingsymbol"] == ["BRK.B is listed on NYSE, not NASDAQ: order NYSE:BRK.B."]
    assert right.status_code == 201, right.json()
    assert searches(schwab_sandbox) == 1


def test_a_batch_leg_on_an_unknown_symbol_names_the_leg(alice_client, us_market, schwab_sandbox):
    legs = [
        order_body(tradingsymbol="AAPL", exchange="NASDAQ", quantity=1),
        order_body(tradingsymbol="NOPE", exchange="NASDAQ", quantity=1),
    ]

    response = alice_client.post(
        f"/api/accounts/{us_market['account'].pk}/batch-orders", {"orders": legs}, format="json"
    )

    assert response.status_code == 400
    assert "Schwab lists no such symbol" in response.json()["errors"]["orders.1.tradingsymbol"][0]
    assert not Order.objects.exists()


HOSTILE = [
    "tsla",
    "AAPL,MSFT",
    "AAPL&projection=fundamental",
    "AAPL' OR '1'='1",
    "A" * 64,
    "\u00c4PPLE",
    "TSLA\u200b",
    "\uff34\uff33\uff2c\uff21",
    "../../trader/v1/accounts",
    "$SPX",
]


def test_hostile_symbols_are_refused_before_any_call_or_cache_key(alice_client, us_market, schwab_sandbox):
    for symbol in HOSTILE:
        response = place(alice_client, account=us_market["account"].pk, tradingsymbol=symbol, exchange="NASDAQ")

        assert response.status_code == 400, symbol
        assert "not a US symbol" in response.json()["errors"]["tradingsymbol"][0]
        assert cache.get(caches.us_symbol_refused_key(symbol)) is None
    lower = place(alice_client, account=us_market["account"].pk, tradingsymbol="tsla", exchange="NASDAQ")
    assert "(US symbols are upper case: TSLA)" in lower.json()["errors"]["tradingsymbol"][0]
    assert searches(schwab_sandbox) == 0
    assert not Order.objects.exists()


def test_without_a_schwab_connection_the_symbol_is_not_verified(alice, tenant, schwab_sandbox):
    assert us_instrument_lookup(exchange="NASDAQ", symbol="TSLA", tenant=tenant) is None
    assert searches(schwab_sandbox) == 0


def test_a_failing_schwab_is_left_alone_for_a_moment(alice, tenant, us_market, schwab_sandbox):
    schwab_fault(schwab_sandbox, kind="5xx", status=503, count=1, path="/marketdata/v1/instruments")

    assert us_instrument_lookup(exchange="NASDAQ", symbol="TSLA", tenant=tenant) is None
    assert us_instrument_lookup(exchange="NASDAQ", symbol="META", tenant=tenant) is None

    # One call (not retried: a placement is waiting), then none while the failure is remembered.
    assert searches(schwab_sandbox) == 1
    assert cache.ttl(caches.us_lookup_failed_key(us_market["connection"].pk)) <= FAILED_SECONDS
    cache.delete(caches.us_lookup_failed_key(us_market["connection"].pk))
    assert us_instrument_lookup(exchange="NASDAQ", symbol="TSLA", tenant=tenant).tradingsymbol == "TSLA"
