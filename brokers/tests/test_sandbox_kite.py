"""The Kite sandbox driven over real HTTP by the official kiteconnect client (no Django, no DB): the login,
sessions, and reads (portfolio, quotes, instruments)."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_exceptions

from brokers.tests import kite_sandbox_calls
from brokers.tests.kite_sandbox_calls import API_KEY, API_SECRET, fixture_data, kite_session, login, pin, request_token

pytestmark = pytest.mark.e2e

# The sandbox's fixtures, by the names pytest finds them under.
postback_receiver = kite_sandbox_calls.postback_receiver
latency_waits = kite_sandbox_calls.latency_waits
sandbox = kite_sandbox_calls.sandbox
fresh_sandbox = kite_sandbox_calls.fresh_sandbox

# --- login and session ------------------------------------------------------------------------


def test_login_form_redirects_with_request_token_and_redirect_params(sandbox):
    form = requests.get(
        f"{sandbox.url}/connect/login",
        params={"v": "3", "api_key": API_KEY, "redirect_params": "state=signed.state&next=%2Fhome"},
        timeout=5,
    )
    assert form.status_code == 200
    assert "text/html" in form.headers["Content-Type"]
    assert 'name="redirect_params" value="state=signed.state&amp;next=%2Fhome"' in form.text

    wrong = login(sandbox, password="nope")
    assert wrong.status_code == 401
    assert "Invalid user ID or password." in wrong.text

    response = login(sandbox)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "http://127.0.0.1:9/callback"
    query = parse_qs(location.query)
    assert query["source"] == ["kite"]
    assert query["action"] == ["login"] and query["status"] == ["success"]
    assert query["state"] == ["signed.state"] and query["next"] == ["/home"]
    assert len(query["request_token"][0]) >= 20


def test_login_form_with_unknown_api_key_is_an_html_error(sandbox):
    response = requests.get(f"{sandbox.url}/connect/login", params={"v": "3", "api_key": "nope"}, timeout=5)
    assert response.status_code == 400
    assert "text/html" in response.headers["Content-Type"]


def test_generate_session_checks_checksum_and_refuses_reused_request_token(sandbox):
    token = request_token(sandbox, user_id="CD5678")
    kite = KiteConnect(api_key=API_KEY, root=sandbox.url)
    with pytest.raises(kite_exceptions.TokenException):
        kite.generate_session(token, api_secret="wrong secret")

    session = kite.generate_session(token, api_secret=API_SECRET)
    assert set(session) == set(fixture_data("generate_session.json"))
    assert session["user_id"] == "CD5678"
    assert session["refresh_token"] == ""
    assert kite.profile()["user_id"] == "CD5678"

    with pytest.raises(kite_exceptions.TokenException, match=r"Token is invalid or has expired\."):
        KiteConnect(api_key=API_KEY, root=sandbox.url).generate_session(token, api_secret=API_SECRET)


def test_invalidated_or_expired_access_token_raises_token_exception(sandbox):
    kite = kite_session(sandbox)
    kite.invalidate_access_token()
    with pytest.raises(kite_exceptions.TokenException) as raised:
        kite.profile()
    assert raised.value.code == 403

    expiring = kite_session(sandbox, user_id="CD5678")
    sandbox.state.kite.expire_sessions(user_id="CD5678")
    with pytest.raises(kite_exceptions.TokenException, match="expired"):
        expiring.holdings()


# --- reads ------------------------------------------------------------------------------------


def test_portfolio_shapes_match_the_kite_mocks(sandbox):
    kite = kite_session(sandbox)
    profile = kite.profile()
    assert set(profile) == set(fixture_data("profile.json"))
    assert profile["user_id"] == "AB1234"

    margins = kite.margins()
    assert margins.keys() == fixture_data("margins.json").keys()
    assert margins["equity"].keys() == fixture_data("margins.json")["equity"].keys()
    assert kite.margins("commodity").keys() == fixture_data("margins.json")["commodity"].keys()

    holdings = kite.holdings()
    assert [set(item) for item in holdings] == [set(item) for item in fixture_data("holdings.json")]
    positions = kite.positions()
    assert positions.keys() == {"net", "day"}
    fixture_position_keys = set(fixture_data("positions.json")["net"][0])
    assert all(set(item) == fixture_position_keys for item in positions["net"] + positions["day"])


def test_quotes_by_symbol_and_token(sandbox):
    kite = kite_session(sandbox)
    pin(sandbox, {"NSE:INFY": 1500.5})
    quotes = kite.quote("NSE:INFY", "408065", "NSE:NOSUCH")
    assert set(quotes) == {"NSE:INFY", "408065"}
    assert set(quotes["NSE:INFY"]) == set(fixture_data("quote.json")["NSE:INFY"])
    assert quotes["408065"]["last_price"] == 1500.5
    assert kite.ltp("NSE:INFY") == {"NSE:INFY": {"instrument_token": 408065, "last_price": 1500.5}}
    assert set(kite.ohlc("NSE:INFY")["NSE:INFY"]) == set(fixture_data("ohlc.json")["NSE:INFY"])


def test_prices_are_readable_without_a_session_and_without_being_counted(sandbox):
    pin(sandbox, {"NSE:INFY": 1500.5})
    requests.delete(f"{sandbox.url}/_sandbox/stats", timeout=5)

    response = requests.get(f"{sandbox.url}/_sandbox/prices", params={"i": ["NSE:INFY", "NSE:NOSUCH"]}, timeout=5)

    assert response.status_code == 200
    assert response.json() == {"NSE:INFY": 1500.5}
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["total"] == 0


def test_instruments_are_csv(sandbox):
    kite = KiteConnect(api_key=API_KEY, root=sandbox.url)
    everything = kite.instruments()
    nse = kite.instruments("NSE")
    assert {row["exchange"] for row in nse} == {"NSE"}
    assert any(row["tradingsymbol"] == "INFY" for row in nse)
    assert len(everything) > len(kite.instruments("NFO")) > 0
