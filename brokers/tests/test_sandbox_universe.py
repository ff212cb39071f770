"""The sandbox's whole market: as large as Kite's dump, the same every time for a day, each contract once,
and served through `/instruments` to the official client when the sandbox lists it."""

from collections import Counter
from datetime import date

import pytest
from kiteconnect import KiteConnect

from brokers.contract_multipliers import LOT_QUANTITY_EXCHANGES, contract_multiplier
from brokers.sandbox.testing import start_sandbox
from brokers.sandbox.universe import universe_rows
from brokers.tests.kite_sandbox_calls import API_KEY, API_SECRET, REDIRECT_URL, kite_session, pin, place

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


def test_every_contract_counted_in_lots_has_a_known_multiplier(rows):
    lots = [row for row in rows if row["exchange"] in LOT_QUANTITY_EXCHANGES]

    assert lots and all(row["lot_size"] == "1" for row in lots)  # as Kite lists MCX and currencies
    unknown = {row["name"] for row in lots if contract_multiplier(exchange=row["exchange"], name=row["name"]) is None}
    assert not unknown


def test_a_full_sandbox_serves_it_to_the_official_client_and_values_an_mcx_lot_by_its_multiplier():
    app = {"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": REDIRECT_URL}
    with start_sandbox(apps=[app], tick_seconds=None, full_universe=True) as sandbox:
        mcx = KiteConnect(api_key="any", root=sandbox.url).instruments("MCX")
        gold, gas = (nearest_future(mcx, name) for name in ("GOLD", "NATGASMINI"))
        kite = kite_session(sandbox)
        pin(sandbox, {f"MCX:{gold}": 76000.0, f"MCX:{gas}": 280.0})
        margin_before = kite.margins("commodity")["net"]
        refused = kite.order_history(place(kite, exchange="MCX", tradingsymbol=gold, quantity=1, product="NRML"))
        place(kite, exchange="MCX", tradingsymbol=gas, quantity=1, product="NRML")
        (position,) = [p for p in kite.positions()["net"] if p["tradingsymbol"] == gas]
        margin_after = kite.margins("commodity")["net"]

    assert {row["name"] for row in mcx} >= {"GOLD", "CRUDEOIL", "NATURALGAS"}
    assert all(row["exchange"] == "MCX" and row["lot_size"] >= 1 for row in mcx)
    # A GOLD lot is a kilogram quoted per 10 g: 7,600,000 of margin, more than the account's 100,000 or so.
    assert refused[-1]["status"] == "REJECTED" and "Required margin is 7600000.00" in refused[-1]["status_message"]
    # Kite's shape: quantity in lots, `multiplier` the 250 mmBtu of a mini natural gas lot.
    assert (position["quantity"], position["multiplier"], position["buy_value"]) == (1, 250, 70000.0)
    assert margin_before - margin_after == 70000.0


def nearest_future(rows, name: str) -> str:
    futures = [row for row in rows if row["name"] == name and row["instrument_type"] == "FUT"]
    return min(futures, key=lambda row: row["expiry"])["tradingsymbol"]
