"""The Kite adapter against the official Kite mock payloads, with `responses` at the HTTP boundary."""

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.kite import KiteAdapter, postback_checksum, session_expiry
from brokers.adapters.types import OrderRequest
from brokers.registry import adapter_for
from brokers.tests.factories import BrokerConnectionFactory
from brokers.tests.kite_fixtures import kite_error, kite_fixture

ROOT = "https://kite.test"


@pytest.fixture(autouse=True)
def kite_settings(settings):
    settings.THOR_KITE_API_ROOT = ROOT
    settings.THOR_KITE_LOGIN_URL = "https://login.kite.test/connect/login"
    settings.THOR_KITE_RATE_WAIT = 0


@pytest.fixture
def kite():
    return KiteAdapter(app_id=1, api_key="apikey123", api_secret="secret456", access_token="token789")


@pytest.fixture
def mocked():
    with responses.RequestsMock() as mock:
        yield mock


def test_login_url_carries_the_state_in_redirect_params(kite):
    url = kite.authorization_url("signed:state/with+chars")

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://login.kite.test/connect/login"
    assert query["v"] == ["3"] and query["api_key"] == ["apikey123"]
    assert parse_qs(query["redirect_params"][0]) == {"state": ["signed:state/with+chars"]}


def test_exchange_sends_the_documented_checksum_and_returns_tokens(mocked, kite):
    mocked.post(f"{ROOT}/session/token", json=kite_fixture("generate_session.json"))

    tokens = kite.exchange({"request_token": "req-token"})

    sent = parse_qs(mocked.calls[0].request.body)
    assert sent["checksum"] == [hashlib.sha256(b"apikey123req-tokensecret456").hexdigest()]
    assert "secret456" not in mocked.calls[0].request.body
    assert tokens.access_token == "XXXXXX" and tokens.broker_user_id == "XX0000"
    assert tokens.access_expires_at.astimezone(UTC).time().isoformat() == "00:30:00"


def test_a_request_token_kite_refuses_is_a_permanent_token_error(mocked, kite):
    mocked.post(
        f"{ROOT}/session/token", json=kite_error("Token is invalid or has expired.", "TokenException"), status=403
    )

    with pytest.raises(BrokerError) as error:
        kite.exchange({"request_token": "used-already"})

    assert error.value.code == BrokerErrorCode.TOKEN_EXPIRED and error.value.permanent


@pytest.mark.parametrize(
    "now, expected",
    [
        (datetime(2026, 3, 2, 0, 29, tzinfo=UTC), datetime(2026, 3, 2, 0, 30, tzinfo=UTC)),
        (datetime(2026, 3, 2, 0, 30, tzinfo=UTC), datetime(2026, 3, 3, 0, 30, tzinfo=UTC)),
        (datetime(2026, 3, 2, 18, 0, tzinfo=UTC), datetime(2026, 3, 3, 0, 30, tzinfo=UTC)),
    ],
)
def test_sessions_end_at_the_next_six_in_the_morning_in_india(now, expected):
    assert session_expiry(now) == expected


def test_profile(mocked, kite):
    mocked.get(f"{ROOT}/user/profile", json=kite_fixture("profile.json"))

    profile = kite.profile()

    assert profile.broker_user_id == "AB1234" and profile.name == "AxAx Bxx" and profile.broker == "kite"
    assert "NSE" in profile.exchanges and "CNC" in profile.products
    assert mocked.calls[0].request.headers["Authorization"] == "token apikey123:token789"


def test_holdings_are_decimal_without_float_noise(mocked, kite):
    mocked.get(f"{ROOT}/portfolio/holdings", json=kite_fixture("holdings.json"))

    holdings = kite.holdings()

    sbin = next(h for h in holdings if h.symbol == "SBIN")
    assert sbin.exchange == "BSE" and sbin.isin == "INE062A01020" and sbin.instrument_token == 128028676
    assert sbin.quantity == Decimal("16")
    assert sbin.average_price == Decimal("801.78125")
    assert sbin.last_price == Decimal("762.45")
    assert sbin.value == Decimal("16") * Decimal("762.45")
    assert all(isinstance(h.pnl, Decimal) for h in holdings)


def test_positions_and_funds(mocked, kite):
    mocked.get(f"{ROOT}/portfolio/positions", json=kite_fixture("positions.json"))
    mocked.get(
        f"{ROOT}/user/margins/equity",
        json={"status": "success", "data": kite_fixture("margins.json")["data"]["equity"]},
    )

    positions = kite.positions()
    funds = kite.funds()

    lead = next(p for p in positions if p.symbol == "LEADMINI17DECFUT")
    assert lead.quantity == Decimal("1") and lead.average_price == Decimal("161.05")
    # What the position is worth (1 lot of 1000 at 161.05), not Kite's cash flow of -161050.
    assert lead.value == Decimal("161050.00")
    assert funds.currency == "INR" and funds.cash == Decimal("245431.6") and funds.utilised == Decimal("145706.55")


def test_quote_by_symbol_and_by_token(mocked, kite):
    mocked.get(f"{ROOT}/quote", json=kite_fixture("quote.json"))

    quote = kite.quotes(["NSE:INFY"])["NSE:INFY"]

    assert (quote.exchange, quote.symbol, quote.instrument_token) == ("NSE", "INFY", 408065)
    assert quote.last_price == Decimal("1412.95") and quote.close == Decimal("1389.65")
    assert quote.timestamp.utcoffset().total_seconds() == 5.5 * 3600
    assert (quote.lower_circuit_limit, quote.upper_circuit_limit) == (Decimal("1250.7"), Decimal("1528.6"))
    assert parse_qs(urlsplit(mocked.calls[0].request.url).query)["i"] == ["NSE:INFY"]


def test_orders_and_placement(mocked, kite):
    mocked.get(f"{ROOT}/orders", json=kite_fixture("orders.json"))
    mocked.post(f"{ROOT}/orders/regular", json=kite_fixture("order_response.json"))

    orders = kite.orders({"status": "COMPLETE"})
    placed = kite.place(
        OrderRequest(
            symbol="INFY",
            exchange="NSE",
            side="BUY",
            quantity=Decimal("2"),
            order_type="LIMIT",
            product="CNC",
            price=Decimal("1400.5"),
            tag="thor123",
        )
    )

    assert orders and all(order.status == "COMPLETE" for order in orders)
    assert isinstance(orders[0].quantity, Decimal)
    assert placed.broker_order_id == "151220000000000"
    sent = parse_qs(mocked.calls[1].request.body)
    assert sent["tradingsymbol"] == ["INFY"] and sent["quantity"] == ["2"] and sent["price"] == ["1400.5"]
    assert sent["tag"] == ["thor123"]


def order_request(**changes) -> OrderRequest:
    fields = {"symbol": "INFY", "exchange": "NSE", "side": "BUY", "quantity": Decimal("3"), "order_type": "MARKET"}
    return OrderRequest(product="CNC", **{**fields, **changes})


def sent_form(call) -> dict:
    return {name: values[0] for name, values in parse_qs(call.request.body).items()}


@pytest.mark.parametrize("order_type, trigger_price", [("MARKET", None), ("SL-M", Decimal("1390"))])
def test_market_and_stop_market_orders_carry_market_protection(mocked, kite, order_type, trigger_price):
    mocked.post(f"{ROOT}/orders/regular", json=kite_fixture("order_response.json"))

    kite.place(order_request(order_type=order_type, trigger_price=trigger_price))

    sent = sent_form(mocked.calls[0])
    assert sent["market_protection"] == "-1"
    assert sent["order_type"] == order_type and sent["quantity"] == "3"


@pytest.mark.parametrize("order_type, price", [("LIMIT", Decimal("1400")), ("SL", Decimal("1400"))])
def test_limit_orders_carry_no_market_protection(mocked, kite, order_type, price):
    mocked.post(f"{ROOT}/orders/regular", json=kite_fixture("order_response.json"))

    kite.place(order_request(order_type=order_type, price=price, trigger_price=Decimal("1390")))

    assert "market_protection" not in sent_form(mocked.calls[0])


@pytest.mark.parametrize("protection, sent", [(Decimal("2.50"), "2.5"), (Decimal("100.00"), "100"), (-1, "-1")])
def test_market_protection_is_sent_as_kite_reads_numbers(mocked, protection, sent):
    mocked.post(f"{ROOT}/orders/regular", json=kite_fixture("order_response.json"))
    kite = KiteAdapter(app_id=1, api_key="apikey123", api_secret="s", access_token="t", market_protection=protection)

    kite.place(order_request())

    assert sent_form(mocked.calls[0])["market_protection"] == sent


@pytest.mark.django_db
def test_the_tenants_market_protection_reaches_kite(mocked, alice):
    alice.tenant.kite_market_protection = Decimal("3.75")
    alice.tenant.save()
    mocked.post(f"{ROOT}/orders/regular", json=kite_fixture("order_response.json"))

    adapter_for(BrokerConnectionFactory(user=alice)).place(order_request())

    assert sent_form(mocked.calls[0])["market_protection"] == "3.75"


def test_modifying_into_a_market_order_adds_market_protection(mocked, kite):
    mocked.put(f"{ROOT}/orders/regular/151220000000000", json=kite_fixture("order_modify.json"))

    kite.modify("151220000000000", {"order_type": "MARKET", "quantity": Decimal("4.0000")})

    sent = sent_form(mocked.calls[0])
    assert sent["market_protection"] == "-1" and sent["quantity"] == "4"


@pytest.mark.parametrize("quantity", [Decimal("1.5"), Decimal("0.0001"), Decimal("NaN"), Decimal("Infinity")])
def test_a_fractional_quantity_is_refused_before_anything_is_sent(mocked, kite, quantity):
    with pytest.raises(BrokerError) as error:
        kite.place(order_request(quantity=quantity))
    with pytest.raises(BrokerError) as modify_error:
        kite.modify("151220000000000", {"quantity": quantity})

    assert error.value.code == BrokerErrorCode.INVALID_INPUT and error.value.permanent
    assert modify_error.value.code == BrokerErrorCode.INVALID_INPUT
    assert len(mocked.calls) == 0


def test_a_whole_quantity_written_with_decimals_is_sent_as_a_whole_number(mocked, kite):
    mocked.post(f"{ROOT}/orders/regular", json=kite_fixture("order_response.json"))

    kite.place(order_request(quantity=Decimal("25.0000")))

    assert sent_form(mocked.calls[0])["quantity"] == "25"


@pytest.mark.parametrize(
    "status, body, code, permanent",
    [
        (
            403,
            kite_error("Incorrect `api_key` or `access_token`.", "TokenException"),
            BrokerErrorCode.TOKEN_EXPIRED,
            True,
        ),
        (429, kite_error("Too many requests", "NetworkException"), BrokerErrorCode.RATE_LIMITED, False),
        (503, kite_error("Service unavailable", "NetworkException"), BrokerErrorCode.UNAVAILABLE, False),
        (500, kite_error("Something broke", "GeneralException"), BrokerErrorCode.UNAVAILABLE, False),
        (400, kite_error("Bad instrument", "InputException"), BrokerErrorCode.INVALID_INPUT, True),
        (403, kite_error("Not allowed", "PermissionException"), BrokerErrorCode.PERMISSION_DENIED, True),
        (500, kite_error("Insufficient funds", "OrderException"), BrokerErrorCode.REJECTED, True),
    ],
)
def test_kite_errors_become_broker_errors(mocked, kite, status, body, code, permanent):
    mocked.get(f"{ROOT}/portfolio/holdings", json=body, status=status)

    with pytest.raises(BrokerError) as error:
        kite.holdings()

    assert error.value.code == code and error.value.permanent is permanent
    assert "token789" not in error.value.message


def test_an_html_error_page_is_unavailable_not_a_crash(mocked, kite):
    mocked.get(f"{ROOT}/portfolio/holdings", body="<html>502 Bad Gateway</html>", status=502, content_type="text/html")

    with pytest.raises(BrokerError) as error:
        kite.holdings()

    assert error.value.code == BrokerErrorCode.UNAVAILABLE and not error.value.permanent


@pytest.mark.parametrize(
    "exc, code",
    [
        (requests.ReadTimeout("slow"), BrokerErrorCode.TIMEOUT),
        (requests.ConnectionError("down"), BrokerErrorCode.UNAVAILABLE),
    ],
)
def test_network_failures_are_transient(mocked, kite, exc, code):
    mocked.get(f"{ROOT}/portfolio/holdings", body=exc)

    with pytest.raises(BrokerError) as error:
        kite.holdings()

    assert error.value.code == code and not error.value.permanent


def test_a_spent_rate_budget_raises_without_calling_kite(mocked, kite):
    mocked.get(f"{ROOT}/quote", json=kite_fixture("quote.json"))
    kite.quotes(["NSE:INFY"])

    with pytest.raises(BrokerError) as error:
        kite.quotes(["NSE:INFY"])

    assert error.value.code == BrokerErrorCode.RATE_LIMITED
    assert len(mocked.calls) == 1


def test_postback_checksum_is_the_documented_sha256():
    expected = hashlib.sha256(b"2203030003089322022-03-03 09:24:25secret").hexdigest()

    assert (
        postback_checksum(order_id="220303000308932", order_timestamp="2022-03-03 09:24:25", api_secret="secret")
        == expected
    )


def test_refresh_is_impossible_on_kite(kite):
    with pytest.raises(BrokerError) as error:
        kite.refresh(None)

    assert error.value.code == BrokerErrorCode.TOKEN_EXPIRED and error.value.permanent


def test_repr_shows_no_credentials(kite):
    assert "secret456" not in repr(kite) and "token789" not in repr(kite)
