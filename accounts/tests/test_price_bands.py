"""The band an order's prices must stay within, and whether a quote is young enough to set one: pure functions of a
quote as the quote service hands it out (its end-to-end behaviour: test_price_protection.py)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.market_data import Instrument
from accounts.price_bands import band_rules, price_band, reference_age_check
from market.quotes import MarketQuote

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
EQUITY = Instrument(exchange="NSE", symbol="BANDCO", tick_size=Decimal("0.05"), lot_size=1, instrument_type="EQ")
OPTION = Instrument(exchange="NFO", symbol="NIFTYCE", tick_size=Decimal("0.05"), lot_size=65, instrument_type="CE")


def quote(last_price="1000", lower=None, upper=None, *, as_of=NOW, source="live") -> MarketQuote:
    return MarketQuote(
        exchange="NSE",
        symbol="BANDCO",
        last_price=Decimal(last_price),
        as_of=as_of,
        source=source,
        lower_circuit_limit=None if lower is None else Decimal(lower),
        upper_circuit_limit=None if upper is None else Decimal(upper),
    )


@pytest.fixture
def rules(tenant):
    return band_rules(tenant)


class TestTheBand:
    def test_an_equity_with_circuit_limits_is_held_to_them(self, rules):
        band = price_band(instrument=EQUITY, quote=quote("1000", "900", "1100"), rules=rules)

        assert (band.low, band.high, band.reference) == (Decimal("900.00"), Decimal("1100.00"), Decimal("1000"))
        assert band.basis == "the day's circuit limits"

    def test_an_option_is_held_to_its_premium_whatever_the_circuit(self, rules):
        band = price_band(instrument=OPTION, quote=quote("100", "1", "5000"), rules=rules)

        assert (band.low, band.high) == (Decimal("60.00"), Decimal("140.00"))

    def test_a_stale_quote_sets_the_band_as_a_live_one_does(self, rules):
        # Its age is judged by `as_of` (reference_age_check), not by the service's live/stale mark.
        band = price_band(instrument=EQUITY, quote=quote("1000", "900", "1100", source="stale"), rules=rules)

        assert (band.low, band.high) == (Decimal("900.00"), Decimal("1100.00"))


class TestHostileQuotes:
    @pytest.mark.parametrize("last_price", ["0", "-5", "NaN", "sNaN", "Infinity", "-Infinity"])
    def test_a_last_price_that_is_no_price_sets_no_band(self, rules, last_price):
        assert price_band(instrument=EQUITY, quote=quote(last_price, "900", "1100"), rules=rules) is None
        assert price_band(instrument=OPTION, quote=quote(last_price), rules=rules) is None

    @pytest.mark.parametrize(
        ("lower", "upper"),
        [
            ("0", "0"),  # Kite's "none"
            (None, "1100"),
            ("1100", "900"),  # inverted
            ("1000", "1000"),
            ("NaN", "1100"),
            ("900", "Infinity"),
            ("-900", "1100"),
        ],
    )
    def test_circuit_limits_that_make_no_band_fall_back_to_the_default_percentage(self, rules, lower, upper):
        band = price_band(instrument=EQUITY, quote=quote("1000", lower, upper), rules=rules)

        assert (band.low, band.high) == (Decimal("800.00"), Decimal("1200.00"))
        assert "no circuit limits quoted" in band.basis


class TestTheReferencesAge:
    def test_a_quote_younger_than_the_window_is_a_reference(self, settings):
        young = quote(as_of=NOW - timedelta(seconds=settings.THOR_PRICE_BAND_QUOTE_SECONDS - 0.1))

        assert reference_age_check(young, now=NOW)

    def test_a_quote_as_old_as_the_window_is_not(self, settings):
        old = quote(as_of=NOW - timedelta(seconds=settings.THOR_PRICE_BAND_QUOTE_SECONDS))

        assert not reference_age_check(old, now=NOW)
        assert not reference_age_check(quote(as_of=NOW - timedelta(days=3)), now=NOW)

    def test_a_quote_dated_in_the_future_by_the_window_or_more_is_not(self, settings):
        window = settings.THOR_PRICE_BAND_QUOTE_SECONDS

        assert reference_age_check(quote(as_of=NOW + timedelta(seconds=0.05)), now=NOW)  # clocks a hair apart
        assert not reference_age_check(quote(as_of=NOW + timedelta(seconds=window)), now=NOW)
        assert not reference_age_check(quote(as_of=datetime(9999, 1, 1, tzinfo=UTC)), now=NOW)

    def test_no_window_no_reference(self, settings):
        settings.THOR_PRICE_BAND_QUOTE_SECONDS = 0

        assert not reference_age_check(quote(as_of=NOW), now=NOW)
