"""US symbols looked up at Schwab (market.instrument_search), with Schwab at the HTTP boundary (`responses`): a
property over any sequence of lookups, Schwab failures and passing time, and the store itself."""

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.core.cache import cache
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from brokers.models import BrokerKind
from brokers.tests.factories import BrokerAppFactory, BrokerConnectionFactory
from identity.tests.factories import TenantFactory, UserFactory
from market import caches
from market.instrument_search import (
    UsSymbolRefused,
    schwab_market_data_connection,
    us_instrument_lookup,
)
from market.loading import instruments_load
from market.models import Instrument
from market.sources import us_seed_rows
from market.tests.fixtures import load_small_master

API = "https://api.schwab.test"
SEARCH = f"{API}/marketdata/v1/instruments"
# What the fake Schwab lists: symbol -> (venue, asset type); Thor's exchange for each tradable one.
LISTED = {
    "TSLA": ("NASDAQ", "EQUITY"),
    "QQQ": ("NASDAQ", "ETF"),
    "BRK.B": ("NYSE", "EQUITY"),
    "SPY": ("NYSE Arca", "ETF"),
    "VFIAX": ("Mutual Fund", "MUTUAL_FUND"),
    "GBTC": ("Pink Sheet", "EQUITY"),
}
TRADABLE = {"TSLA": "NASDAQ", "QQQ": "NASDAQ", "BRK.B": "NYSE", "SPY": "NYSE"}
HOSTILE = ["tsla", "TSLA,QQQ", "TSLA&projection=fundamental", "\u00c4PPLE", "A" * 40, "", "$SPX"]


class FakeSchwab:
    """Schwab's instrument search: answers from LISTED, or fails (503) while `failing`."""

    def __init__(self):
        self.failing = False
        self.answered: dict[str, int] = {}
        self.calls = 0

    def __call__(self, request):
        self.calls += 1
        if self.failing:
            return 503, {}, '{"errors": [{"status": "503", "title": "Service Unavailable", "detail": "down"}]}'
        query = parse_qs(urlsplit(request.url).query)
        assert query["projection"] == ["symbol-search"]
        found = []
        for symbol in query["symbol"][0].split(","):
            self.answered[symbol] = self.answered.get(symbol, 0) + 1
            if symbol in LISTED:
                venue, asset_type = LISTED[symbol]
                found.append(
                    {
                        "cusip": "0",
                        "symbol": symbol,
                        "description": f"{symbol} CO",
                        "exchange": venue,
                        "assetType": asset_type,
                    }
                )
        return 200, {}, json.dumps({"instruments": found})


@pytest.fixture
def schwab_connection(alice, settings):
    settings.THOR_SCHWAB_API_BASE = API
    settings.THOR_SCHWAB_RATE_WAIT = 0
    settings.THOR_SCHWAB_INSTRUMENT_SEARCHES_PER_MINUTE = 10_000
    settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 10_000
    app = BrokerAppFactory(tenant=alice.tenant, kind=BrokerKind.SCHWAB, name="Acme Schwab")
    return BrokerConnectionFactory(user=alice, app=app)


steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("lookup"), st.sampled_from([*LISTED, "ZZZZ", "NOPE", *HOSTILE]), st.sampled_from(["NASDAQ", "NYSE"])
        ),
        st.tuples(st.just("schwab fails"), st.booleans(), st.just("")),
        st.tuples(st.just("time passes"), st.just(""), st.just("")),
    ),
    max_size=25,
)


@pytest.mark.django_db
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
@given(sequence=steps)
def test_lookups_ask_schwab_at_most_once_a_symbol_and_store_only_what_it_lists(schwab_connection, sequence):
    tenant = schwab_connection.app.tenant
    fake = FakeSchwab()
    # Each example starts afresh: what earlier examples stored or remembered is forgotten.
    Instrument.objects.all().delete()
    cache.clear()
    caches.instruments_flush()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, SEARCH, callback=fake)
        for kind, value, exchange in sequence:
            if kind == "schwab fails":
                fake.failing = value
                continue
            if kind == "time passes":
                cache.delete(caches.us_lookup_failed_key(schwab_connection.pk))
                continue
            calls_before, failed_before = fake.calls, cache.get(caches.us_lookup_failed_key(schwab_connection.pk))
            try:
                found = us_instrument_lookup(exchange=exchange, symbol=value, tenant=tenant)
            except UsSymbolRefused:
                # Refused: malformed, not a tradable listing, or listed on the other exchange.
                assert TRADABLE.get(value) != exchange
                if value in HOSTILE:
                    assert fake.calls == calls_before
                continue
            if found is None:
                # Not verified: only while Schwab fails (now, or remembered from a failure).
                assert fake.failing or failed_before is not None
                assert value not in HOSTILE
            else:
                assert (found.exchange, found.tradingsymbol) == (TRADABLE[value], value)
                assert (found.lot_size, found.currency, str(found.tick_size), found.source) == (
                    1,
                    "USD",
                    "0.0100",
                    "schwab",
                )
    # Schwab answered each symbol at most once, and never was asked about a hostile one.
    assert all(count == 1 for count in fake.answered.values()), fake.answered
    assert not set(fake.answered) & set(HOSTILE)
    stored = dict(Instrument.objects.values_list("tradingsymbol", "exchange"))
    assert stored.items() <= TRADABLE.items()


@pytest.mark.django_db
def test_the_connection_is_the_tenants_most_recently_synced_active_login_on_its_shared_schwab_app(alice, bob):
    app = BrokerAppFactory(tenant=alice.tenant, kind=BrokerKind.SCHWAB, name="Acme Schwab")
    older = BrokerConnectionFactory(user=alice, app=app, last_sync_at=timezone.now() - timedelta(hours=1))
    newer = BrokerConnectionFactory(user=bob, app=app, last_sync_at=timezone.now())
    BrokerConnectionFactory(user=bob, app=app, status="expired", last_sync_at=timezone.now() + timedelta(hours=1))
    own = BrokerAppFactory(tenant=alice.tenant, kind=BrokerKind.SCHWAB, name="Own", owner=alice)
    BrokerConnectionFactory(user=alice, app=own, last_sync_at=timezone.now() + timedelta(hours=2))
    BrokerConnectionFactory(user=alice)  # a Kite one
    other_tenant = UserFactory(tenant=TenantFactory(slug="other"))
    BrokerConnectionFactory(
        user=other_tenant,
        app=BrokerAppFactory(tenant=other_tenant.tenant, kind=BrokerKind.SCHWAB),
        last_sync_at=timezone.now() + timedelta(hours=3),
    )

    assert schwab_market_data_connection(alice.tenant) == newer
    newer.delete()
    assert schwab_market_data_connection(alice.tenant) == older


@pytest.mark.django_db
def test_the_days_reload_of_the_seed_keeps_the_symbols_looked_up_since(schwab_connection):
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, SEARCH, callback=FakeSchwab())
        us_instrument_lookup(exchange="NASDAQ", symbol="TSLA", tenant=schwab_connection.app.tenant)
    load_small_master()  # Kite's dump, then the US seed, as the daily task loads them

    tsla = Instrument.objects.get(exchange="NASDAQ", tradingsymbol="TSLA")
    assert tsla.tradable and not tsla.expired
    summary = instruments_load(rows=us_seed_rows(), source=Instrument.Source.SCHWAB, complete=False)
    assert summary.added == summary.updated == summary.expired == 0
