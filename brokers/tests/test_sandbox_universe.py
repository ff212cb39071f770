"""The sandbox's whole market: as large as Kite's dump, the same every time for a day, each contract once,
and served through `/instruments` to the official client when the sandbox lists it."""

from collections import Counter
from datetime import date

import pytest
from kiteconnect import KiteConnect

from brokers.sandbox.testing import start_sandbox
from brokers.sandbox.universe import universe_rows

DAY = date(2026, 12, 7)


@pytest.fixture(scope="module")
def rows():
    return universe_rows(DAY)


def test_it_is_as_large_as_kites_dump_across_every_segment(rows):
    by_segment = Counter(row["segment"] for row in rows)

    assert 90_000 <= len(rows) <= 110_000
    for segment in ("NSE", "BSE", "INDICES", "NFO-FUT", "NFO-OPT", "BFO-FUT", "BFO-OPT", "MCX-FUT", "MCX-OPT"):
        assert by_segment[segment] > 0, segment
    assert by_segment["CDS-FUT"] and by_segment["CDS-OPT"]


def test_each_contract_and_token_is_listed_once(rows):
    assert len({(row["exchange"], row["tradingsymbol"]) for row in rows}) == len(rows)
    assert len({row["instrument_token"] for row in rows}) == len(rows)


def test_the_same_day_lists_the_same_rows():
    universe_rows.cache_clear()

    assert universe_rows(DAY) == universe_rows.__wrapped__(DAY)


def test_nothing_listed_has_expired_and_options_span_several_expiries_and_strikes(rows):
    expiries = {row["expiry"] for row in rows if row["expiry"]}
    sensex = [row for row in rows if row["name"] == "SENSEX" and row["instrument_type"] == "CE"]

    assert min(expiries) >= DAY.isoformat()
    assert len({row["expiry"] for row in sensex}) >= 5 and len({row["strike"] for row in sensex}) >= 50


def test_a_full_sandbox_serves_it_to_the_official_client():
    with start_sandbox(tick_seconds=None, full_universe=True) as sandbox:
        mcx = KiteConnect(api_key="any", root=sandbox.url).instruments("MCX")

    assert {row["name"] for row in mcx} >= {"GOLD", "CRUDEOIL", "NATURALGAS"}
    assert all(row["exchange"] == "MCX" and row["lot_size"] >= 1 for row in mcx)
