"""Schwab's instrument search through the adapter (`search_instruments`), with `responses` at the HTTP boundary:
Schwab's answer read into InstrumentInfo, its venue names into Thor's exchanges, its budget, and input refused
before anything is sent."""

from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.kite import KiteAdapter
from brokers.adapters.schwab.instruments import US_SYMBOL
from brokers.tests import schwab_wire
from brokers.tests.schwab_wire import API, make_adapter

schwab_settings = schwab_wire.schwab_settings
mocked = schwab_wire.mocked
schwab = schwab_wire.schwab

INSTRUMENTS = f"{API}/marketdata/v1/instruments"
# Schwab's answer to `symbol=AAPL,BAC,SPY,VFIAX,GBTC&projection=symbol-search`, in its shape.
ANSWER = {
    "instruments": [
        {
            "cusip": "037833100",
            "symbol": "AAPL",
            "description": "Apple Inc",
            "exchange": "NASDAQ",
            "assetType": "EQUITY",
        },
        {
            "cusip": "060505104",
            "symbol": "BAC",
            "description": "Bank Of America Corp",
            "exchange": "NYSE",
            "assetType": "EQUITY",
        },
        {
            "cusip": "78462F103",
            "symbol": "SPY",
            "description": "SPDR S&P 500 ETF",
            "exchange": "NYSE Arca",
            "assetType": "ETF",
        },
        {
            "cusip": "922908710",
            "symbol": "VFIAX",
            "description": "Vanguard 500 Index Admiral",
            "exchange": "Mutual Fund",
            "assetType": "MUTUAL_FUND",
        },
        {"cusip": "", "symbol": "GBTC", "description": "Grayscale", "exchange": "Pink Sheet", "assetType": "EQUITY"},
        {"description": "no symbol: left out"},
        "not an object",
    ]
}


def _query(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def test_symbols_are_searched_in_one_call_and_read_into_neutral_instruments(mocked, schwab):
    mocked.get(INSTRUMENTS, json=ANSWER)

    found = schwab.search_instruments(["AAPL", "BAC", "SPY", "VFIAX", "GBTC", "AAPL"])

    assert _query(mocked.calls[0]) == {"symbol": ["AAPL,BAC,SPY,VFIAX,GBTC"], "projection": ["symbol-search"]}
    assert mocked.calls[0].request.headers["Authorization"] == "Bearer access-789"
    by_symbol = {info.symbol: info for info in found}
    assert list(by_symbol) == ["AAPL", "BAC", "SPY", "VFIAX", "GBTC"]
    aapl = by_symbol["AAPL"]
    assert (aapl.exchange, aapl.name, aapl.asset_type, aapl.cusip, aapl.venue) == (
        "NASDAQ",
        "Apple Inc",
        "EQUITY",
        "037833100",
        "NASDAQ",
    )
    # Thor labels every US listing outside Nasdaq NYSE, as its seed labels SPY; other venues are no exchange.
    assert (by_symbol["SPY"].exchange, by_symbol["SPY"].venue, by_symbol["SPY"].asset_type) == (
        "NYSE",
        "NYSE Arca",
        "ETF",
    )
    assert by_symbol["VFIAX"].exchange == "" and by_symbol["VFIAX"].asset_type == "MUTUAL_FUND"
    assert by_symbol["GBTC"].exchange == ""


@pytest.mark.parametrize("answer", [{"instruments": []}, {}, [], {"instruments": None}])
def test_symbols_schwab_does_not_list_are_an_empty_answer(mocked, schwab, answer):
    mocked.get(INSTRUMENTS, json=answer)

    assert schwab.search_instruments(["ZZZZ"]) == []


def test_a_description_search_asks_desc_search(mocked, schwab):
    mocked.get(INSTRUMENTS, json={"instruments": ANSWER["instruments"][:1]})

    found = schwab.search_instruments(query="apple inc")

    assert _query(mocked.calls[0]) == {"symbol": ["apple inc"], "projection": ["desc-search"]}
    assert [info.symbol for info in found] == ["AAPL"]


def test_a_bad_request_is_invalid_input_carrying_schwabs_detail(mocked, schwab):
    mocked.get(
        INSTRUMENTS,
        status=400,
        json={
            "errors": [
                {
                    "id": "0be22ae7-efdf-44d9-99f4-f138049d76ca",
                    "status": "400",
                    "title": "Bad Request",
                    "detail": "projection should be one of symbol-search, fundamental.",
                    "source": {"parameter": "projection"},
                }
            ]
        },
    )

    with pytest.raises(BrokerError) as raised:
        schwab.search_instruments(["AAPL"])

    assert raised.value.code == BrokerErrorCode.INVALID_INPUT and raised.value.permanent
    assert "projection should be one of" in raised.value.broker_message


def test_searches_spend_their_own_share_of_the_apps_budget_and_never_wait_when_told(mocked, settings):
    settings.THOR_SCHWAB_INSTRUMENT_SEARCHES_PER_MINUTE = 2
    settings.THOR_SCHWAB_RATE_WAIT = 5.0
    mocked.get(INSTRUMENTS, json={"instruments": []})
    adapter = make_adapter()

    adapter.search_instruments(["AAPL"], wait_for_budget=False)
    adapter.search_instruments(["MSFT"], wait_for_budget=False)
    with pytest.raises(BrokerError) as raised:
        adapter.search_instruments(["NVDA"], wait_for_budget=False)

    assert raised.value.code == BrokerErrorCode.RATE_LIMITED
    assert len(mocked.calls) == 2


def test_a_failed_search_that_need_not_wait_is_not_retried(mocked):
    mocked.get(INSTRUMENTS, status=503, json={"message": "down", "errors": ["down"]})

    with pytest.raises(BrokerError) as raised:
        make_adapter().search_instruments(["AAPL"], wait_for_budget=False)

    assert raised.value.code == BrokerErrorCode.UNAVAILABLE
    assert len(mocked.calls) == 1


HOSTILE = [
    "AAPL,MSFT",
    "AAPL&projection=fundamental",
    "aapl",
    "",
    " AAPL",
    "A" * 5000,
    "ÄPPLE",
    "AAPL\x00",
    "AAPL;DROP TABLE",
    "../trader/v1/accounts",
    "AAPL%2CMSFT",
    "\uff21\uff21\uff30\uff2c",  # fullwidth AAPL
]


@pytest.mark.parametrize("symbol", HOSTILE)
def test_hostile_symbols_are_refused_before_anything_is_sent(schwab, symbol):
    with responses.RequestsMock() as mock:
        with pytest.raises(BrokerError) as raised:
            schwab.search_instruments(["AAPL", symbol])
        assert len(mock.calls) == 0
    assert raised.value.code == BrokerErrorCode.INVALID_INPUT and raised.value.permanent


@pytest.mark.parametrize("query", ["", "x" * 65, "apple.*", "a\nb", "<script>", "%00"])
def test_hostile_queries_are_refused_before_anything_is_sent(schwab, query):
    with responses.RequestsMock() as mock:
        with pytest.raises(BrokerError):
            schwab.search_instruments(query=query)
        assert len(mock.calls) == 0


@hypothesis_settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(symbol=st.text(max_size=40))
def test_any_text_is_either_a_us_symbol_sent_whole_or_refused_unsent(schwab, symbol):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(INSTRUMENTS, json={"instruments": []})
        try:
            schwab.search_instruments([symbol])
        except BrokerError as error:
            assert error.code in (BrokerErrorCode.INVALID_INPUT, BrokerErrorCode.RATE_LIMITED)
            assert error.code == BrokerErrorCode.RATE_LIMITED or len(mock.calls) == 0
            return
        assert US_SYMBOL.fullmatch(symbol)
        assert _query(mock.calls[0])["symbol"] == [symbol]


def test_kite_has_no_instrument_search():
    adapter = KiteAdapter(app_id=1, api_key="k", api_secret="s")

    with pytest.raises(BrokerError) as raised:
        adapter.search_instruments(["INFY"])

    assert raised.value.code == BrokerErrorCode.INVALID_INPUT
