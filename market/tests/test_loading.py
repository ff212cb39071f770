"""instruments_load: the master upserted from a dump, writing only what changed, expiring never deleting."""

from datetime import date

import pytest

from market.caches import instruments_flush
from market.loading import instruments_load
from market.models import Instrument
from market.selectors import instrument_get

pytestmark = pytest.mark.django_db

TODAY = date(2026, 12, 7)


def dump_row(symbol: str, **overrides) -> dict:
    row = {
        "instrument_token": str(abs(hash(symbol)) % 10**9),
        "exchange_token": "1",
        "tradingsymbol": symbol,
        "name": "NIFTY",
        "last_price": "0.0",
        "expiry": "2026-12-29",
        "strike": "0.0",
        "tick_size": "0.05",
        "lot_size": "65",
        "instrument_type": "FUT",
        "segment": "NFO-FUT",
        "exchange": "NFO",
    }
    return row | overrides


def equity_row(symbol: str, exchange: str = "NSE", **overrides) -> dict:
    equity = {"name": symbol, "expiry": "", "lot_size": "1", "instrument_type": "EQ", "segment": exchange}
    return dump_row(symbol, exchange=exchange, **(equity | overrides))


def stored(symbol: str) -> Instrument:
    return Instrument.objects.get(tradingsymbol=symbol)


def test_a_first_load_adds_every_row_with_its_contract_terms():
    summary = instruments_load(
        rows=[
            dump_row("NIFTY26DECFUT"),
            dump_row("NIFTY26DEC24500CE", strike="24500.0", instrument_type="CE", segment="NFO-OPT"),
            equity_row("INFY"),
        ],
        today=TODAY,
    )

    assert (summary.added, summary.updated, summary.unchanged, summary.expired) == (3, 0, 0, 0)
    option = stored("NIFTY26DEC24500CE")
    assert option.expiry == date(2026, 12, 29) and option.strike == 24500 and option.lot_size == 65
    assert str(option.tick_size) == "0.0500" and option.currency == "INR" and option.source == "kite"
    assert option.tradable and not option.expired


def test_the_exchanges_freeze_quantity_is_applied_to_index_derivatives_only():
    instruments_load(rows=[dump_row("NIFTY26DECFUT"), dump_row("INFY26DECFUT", name="INFY")], today=TODAY)

    assert stored("NIFTY26DECFUT").freeze_quantity == 1800
    assert stored("INFY26DECFUT").freeze_quantity is None


def test_a_contract_whose_quantity_is_lots_stores_its_multiplier_and_an_unlisted_one_none(caplog):
    mcx = {"exchange": "MCX", "segment": "MCX-FUT", "lot_size": "1", "tick_size": "1.0"}
    summary = instruments_load(
        rows=[
            dump_row("GOLD26DECFUT", name="GOLD", **mcx),
            dump_row("KAPAS26DECFUT", name="KAPAS", **mcx),
            dump_row("USDINR26DECFUT", name="USDINR", exchange="CDS", segment="CDS-FUT", lot_size="1"),
            dump_row("NIFTY26DECFUT"),
        ],
        today=TODAY,
    )

    assert summary.unsized == 1
    assert "MCX:KAPAS (1)" in caplog.text and "contract_multipliers.py" in caplog.text
    assert stored("GOLD26DECFUT").multiplier == 100  # a kilogram, priced per 10 g
    assert stored("USDINR26DECFUT").multiplier == 1000
    assert stored("KAPAS26DECFUT").multiplier is None  # not in brokers.contract_multipliers: paper refuses it
    assert stored("NIFTY26DECFUT").multiplier == 1  # NFO's quantity is units


def test_an_index_is_listed_but_not_tradable():
    instruments_load(rows=[equity_row("NIFTY 50", segment="INDICES", tick_size="0.0", lot_size="0")], today=TODAY)

    index = stored("NIFTY 50")
    assert not index.tradable and not index.expired


def test_a_contract_past_its_expiry_is_kept_expired_and_not_tradable():
    summary = instruments_load(rows=[dump_row("NIFTY26NOVFUT", expiry="2026-11-24")], today=TODAY)

    assert summary.expired == 1
    assert stored("NIFTY26NOVFUT").expired and not stored("NIFTY26NOVFUT").tradable


def test_a_reload_of_the_same_dump_writes_nothing():
    rows = [dump_row("NIFTY26DECFUT"), equity_row("INFY")]
    instruments_load(rows=rows, today=TODAY)
    first_write = stored("INFY").updated_at

    summary = instruments_load(rows=rows, today=TODAY)

    assert (summary.added, summary.updated, summary.unchanged) == (0, 0, 2)
    assert stored("INFY").updated_at == first_write


def test_a_changed_row_is_updated_in_place():
    # NSE's lot revision (75 -> 65 from the January 2026 series) reaches a contract already loaded.
    instruments_load(rows=[dump_row("NIFTY26DECFUT", lot_size="75")], today=TODAY)
    first_id = stored("NIFTY26DECFUT").pk

    summary = instruments_load(rows=[dump_row("NIFTY26DECFUT", lot_size="65")], today=TODAY)

    assert (summary.added, summary.updated) == (0, 1)
    assert stored("NIFTY26DECFUT").lot_size == 65 and stored("NIFTY26DECFUT").pk == first_id


def test_the_next_days_load_expires_what_expired_overnight():
    instruments_load(rows=[dump_row("NIFTY26DECFUT")], today=TODAY)

    summary = instruments_load(rows=[dump_row("NIFTY26DECFUT")], today=date(2026, 12, 30))

    assert summary.expired == 1 and stored("NIFTY26DECFUT").expired


def test_a_contract_gone_from_the_dump_is_expired_not_deleted():
    instruments_load(rows=[dump_row("NIFTY26DECFUT"), equity_row("OLDCO")], today=TODAY)

    summary = instruments_load(rows=[dump_row("NIFTY26DECFUT")], today=TODAY)

    assert summary.expired == 1
    assert stored("OLDCO").expired and not stored("OLDCO").tradable
    assert not stored("NIFTY26DECFUT").expired


def test_a_partial_listing_or_another_source_expires_nothing():
    instruments_load(rows=[equity_row("AAPL", exchange="NASDAQ")], source="schwab", today=TODAY)
    instruments_load(rows=[equity_row("INFY")], today=TODAY)

    instruments_load(rows=[equity_row("TCS")], today=TODAY, complete=False)

    assert not stored("INFY").expired, "a search's answer is not the whole listing"
    assert not stored("AAPL").expired and stored("AAPL").currency == "USD"


def test_a_malformed_row_is_skipped_and_the_rest_loaded():
    summary = instruments_load(
        rows=[dump_row("NIFTY26DECFUT"), dump_row("BADLOT", lot_size="many"), {"exchange": "NFO"}], today=TODAY
    )

    assert summary.skipped == 2 and summary.added == 1
    assert not Instrument.objects.filter(tradingsymbol="BADLOT").exists()


def test_progress_is_reported_per_batch_up_to_the_total(monkeypatch):
    monkeypatch.setattr("market.loading.BATCH", 2)
    seen = []

    instruments_load(rows=[equity_row(f"CO{n}") for n in range(5)], today=TODAY, progress=lambda *at: seen.append(at))

    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_a_load_reaches_the_readers_cache_at_once():
    assert instrument_get(exchange="NFO", tradingsymbol="NIFTY26DECFUT") is None

    instruments_load(rows=[dump_row("NIFTY26DECFUT")], today=TODAY)

    assert instrument_get(exchange="NFO", tradingsymbol="NIFTY26DECFUT").lot_size == 65
    instruments_flush()
