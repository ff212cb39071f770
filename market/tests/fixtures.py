"""A small instrument master for the tests that trade listed contracts (the root conftest registers it).

`instrument_master` loads a dump of a few dozen rows, served to the official Kite client by `responses`,
inside the test's transaction: cheap enough per test, and nothing outlives the test. The contracts are
listed from today, so they never expire under the tests: NIFTY_FUTURE is next month's NIFTY future (this
month's may expire during a run), NIFTY_OPTION one of its strikes; EXPIRED_OPTION expired in 2018.
"""

import csv
import functools
import io
from datetime import timedelta

import pytest
import responses
from django.conf import settings

from brokers.sandbox.market import chain_listing_day, read_csv_fixture
from brokers.sandbox.option_chain import MONTH_NAMES, OptionChainBook, monthly_expiries
from market.caches import instruments_flush
from market.services import instruments_refresh

_TODAY = chain_listing_day()
_NEXT_MONTH = monthly_expiries(_TODAY)[1]
_MONTH = f"{_NEXT_MONTH:%y}{MONTH_NAMES[_NEXT_MONTH.month - 1]}"
NIFTY_FUTURE = f"NIFTY{_MONTH}FUT"
NIFTY_OPTION = f"NIFTY{_MONTH}24500CE"
EXPIRED_OPTION = "BANKNIFTY18JAN23500CE"
NIFTY_INDEX = "NIFTY 50"
NIFTY_LOT, NIFTY_FREEZE = 65, 1800  # NSE's since January 2026: the freeze is no whole number of lots
NIFTY_SLICE = NIFTY_FREEZE // NIFTY_LOT * NIFTY_LOT  # the most one order may carry: 27 lots, 1,755
# MCX: a quantity is lots (lot size 1 in Kite's dump), a GOLD lot is a kilogram priced per 10 g (multiplier 100);
# KAPAS is an MCX contract brokers.contract_multipliers does not list (its multiplier is not known).
# GOLD_CALL is an option on GOLD_FUTURE, expiring three days before it (as MCX's do).
GOLD_FUTURE, GOLD_MULTIPLIER = f"GOLD{_MONTH}FUT", 100
GOLD_CALL = f"GOLD{_MONTH}76000CE"
UNSIZED_FUTURE = f"KAPAS{_MONTH}FUT"
# NSE's currency segment (Kite's CDS): a lot of USDINR is 1,000 dollars quoted in rupees per dollar.
USDINR_FUTURE = f"USDINR{_MONTH}FUT"


def _lots_contract(token: int, symbol: str, name: str, price: str, **terms: str) -> dict[str, str]:
    return {
        "instrument_token": str(token),
        "exchange_token": str(token // 256),
        "tradingsymbol": symbol,
        "name": name,
        "last_price": price,
        "expiry": _NEXT_MONTH.isoformat(),
        "strike": "0.0",
        "tick_size": "1.0",
        "lot_size": "1",
        "instrument_type": "FUT",
        "segment": "MCX-FUT",
        "exchange": "MCX",
    } | terms


@functools.cache
def small_dump_csv() -> str:
    """Today's NIFTY/BANKNIFTY futures, one expiry's NIFTY options near the money, the indices, the
    sandbox's equities, the 2018 mocks' NFO contracts (expired), MCX contracts and a currency future: Kite's
    columns."""
    chain = OptionChainBook(_TODAY).csv_rows()
    rows = [
        row
        for row in chain
        if row["segment"] == "INDICES"
        or row["instrument_type"] == "FUT"
        or (
            row["expiry"] == _NEXT_MONTH.isoformat()
            and row["name"] == "NIFTY"
            and 24000 <= float(row["strike"]) <= 25000
        )
    ]
    rows += read_csv_fixture("sandbox_instruments.csv")
    rows += [row for row in read_csv_fixture("instruments_all.csv") if row["exchange"] == "NFO"]
    rows += [
        _lots_contract(0x7000_0107, GOLD_FUTURE, "GOLD", "76000.0"),
        _lots_contract(0x7000_0207, UNSIZED_FUTURE, "KAPAS", "1500.0"),
        _lots_contract(
            0x7000_0307,
            GOLD_CALL,
            "GOLD",
            "500.0",
            expiry=(_NEXT_MONTH - timedelta(days=3)).isoformat(),
            strike="76000.0",
            tick_size="0.5",
            instrument_type="CE",
            segment="MCX-OPT",
        ),
        _lots_contract(
            0x7000_0103, USDINR_FUTURE, "USDINR", "84.5", tick_size="0.0025", segment="CDS-FUT", exchange="CDS"
        ),
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def load_small_master() -> None:
    with responses.RequestsMock() as mocked:
        mocked.get(f"{settings.THOR_KITE_API_ROOT}/instruments", body=small_dump_csv(), content_type="text/csv")
        instruments_refresh()


@pytest.fixture
def instrument_master(db):
    """The small master, loaded in this test's transaction (and forgotten with it, cache included)."""
    load_small_master()
    yield
    instruments_flush()
