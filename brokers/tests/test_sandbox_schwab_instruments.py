"""The Schwab sandbox's instrument search over real HTTP (`GET /marketdata/v1/instruments`): Schwab's shape for
its whole US universe (beyond Thor's seed), each projection, Schwab's market-data errors for bad input, and the
Schwab adapter reading it."""

import pytest
import requests

from brokers.adapters.schwab import SchwabAdapter
from brokers.tests.schwab_link_steps import CLIENT_ID, CLIENT_SECRET, SPA_CALLBACK
from market.sources import us_seed_rows

pytestmark = pytest.mark.e2e

PATH = "/marketdata/v1/instruments"


@pytest.fixture
def sandbox(schwab_sandbox):
    """The process's shared Schwab sandbox (a search changes nothing in it)."""
    return schwab_sandbox


@pytest.fixture
def session(sandbox):
    """A login of a sandbox user straight into tokens (no login page)."""
    answer = requests.post(
        f"{sandbox.url}/_sandbox/schwab/grants", json={"client_id": CLIENT_ID, "count": 1}, timeout=5
    )
    answer.raise_for_status()
    return {"access": answer.json()[0]["access_token"]}


def api(sandbox, method: str, path: str, access_token: str, **kwargs):
    return requests.request(
        method, f"{sandbox.url}{path}", headers={"Authorization": f"Bearer {access_token}"}, timeout=5, **kwargs
    )


def search(sandbox, session, symbol, projection="symbol-search"):
    params = {"symbol": symbol, "projection": projection} if projection is not None else {"symbol": symbol}
    return api(sandbox, "GET", PATH, session["access"], params=params)


def test_a_symbol_search_answers_in_schwabs_shape_beyond_thors_seed(sandbox, session):
    seeded = {row["tradingsymbol"] for row in us_seed_rows()}
    assert "TSLA" not in seeded and "QQQ" not in seeded

    answer = search(sandbox, session, "tsla,QQQ,SPY,NOPE,BRK.B")

    assert answer.status_code == 200
    assert answer.json() == {
        "instruments": [
            {
                "cusip": "88160R101",
                "symbol": "TSLA",
                "description": "TESLA INC",
                "exchange": "NASDAQ",
                "assetType": "EQUITY",
            },
            {
                "cusip": "46090E103",
                "symbol": "QQQ",
                "description": "INVESCO QQQ TRUST SERIES 1",
                "exchange": "NASDAQ",
                "assetType": "ETF",
            },
            {
                "cusip": "78462F103",
                "symbol": "SPY",
                "description": "SPDR S&P 500 ETF",
                "exchange": "NYSE Arca",
                "assetType": "ETF",
            },
            {
                "cusip": "084670702",
                "symbol": "BRK.B",
                "description": "BERKSHIRE HATHAWAY INC CLASS B",
                "exchange": "NYSE",
                "assetType": "EQUITY",
            },
        ]
    }
    assert search(sandbox, session, "ZZZZ,NOPE").json() == {"instruments": []}


def test_the_other_projections(sandbox, session):
    fundamental = search(sandbox, session, "AAPL", "fundamental").json()["instruments"]
    assert [item["symbol"] for item in fundamental] == ["AAPL"]
    assert {"high52", "low52", "peRatio", "dividendYield", "marketCap"} <= set(fundamental[0]["fundamental"])
    assert [i["symbol"] for i in search(sandbox, session, "walt disney", "desc-search").json()["instruments"]] == [
        "DIS"
    ]
    assert [i["symbol"] for i in search(sandbox, session, "AM.*", "symbol-regex").json()["instruments"]] == [
        "AMZN",
        "AMD",
    ]
    assert [i["symbol"] for i in search(sandbox, session, "^WAL", "desc-regex").json()["instruments"]] == [
        "WMT",
        "DIS",
    ]


BAD_INPUT = [
    ("", "symbol-search", "symbol"),
    ("AAPL", None, "projection"),
    ("AAPL", "everything", "projection"),
    ("A" * 5000, "symbol-search", "symbol"),
    (",".join(f"S{n}" for n in range(501)), "symbol-search", "symbol"),
    ("(", "symbol-regex", "symbol"),
    ("A" * 101, "symbol-regex", "symbol"),
]


def test_bad_input_is_schwabs_market_data_400(sandbox, session):
    for symbol, projection, parameter in BAD_INPUT:
        answer = search(sandbox, session, symbol, projection)

        assert answer.status_code == 400, (symbol[:20], projection)
        [error] = answer.json()["errors"]
        assert error["status"] == "400" and error["title"] == "Bad Request" and error["detail"]
        assert error["source"] == {"parameter": parameter} and error["id"]


def test_without_a_token_nothing_is_searched(sandbox):
    assert (
        api(sandbox, "GET", PATH, "nope", params={"symbol": "AAPL", "projection": "symbol-search"}).status_code == 401
    )


def test_the_adapter_reads_the_sandboxs_answer(settings, sandbox, session):
    settings.THOR_SCHWAB_API_BASE = sandbox.url
    settings.THOR_SCHWAB_RATE_WAIT = 0
    adapter = SchwabAdapter(
        app_id=7101,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=SPA_CALLBACK,
        access_token=session["access"],
    )

    found = {info.symbol: info for info in adapter.search_instruments(["SPY", "META", "ZZZZ"])}

    assert set(found) == {"SPY", "META"}
    assert (found["SPY"].exchange, found["SPY"].asset_type, found["SPY"].venue) == ("NYSE", "ETF", "NYSE Arca")
    assert (found["META"].exchange, found["META"].name) == ("NASDAQ", "META PLATFORMS INC CLASS A")
