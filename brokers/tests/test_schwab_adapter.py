"""The Schwab adapter with `responses` at the HTTP boundary: OAuth, accounts, orders, errors and budgets."""

import base64
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.schwab import SchwabAdapter
from brokers.adapters.types import OrderRequest, Tokens
from brokers.models import BrokerKind
from brokers.registry import adapter_for
from brokers.tests.factories import BrokerAppFactory, BrokerConnectionFactory

API = "https://api.schwab.test"
AUTH = "https://auth.schwab.test"
CALLBACK = "https://app.acme.test/schwab/callback"
HASH = "A" * 64
ORDERS = f"{API}/trader/v1/accounts/{HASH}/orders"
TOKEN = f"{AUTH}/v1/oauth/token"
# Rate buckets live in Redis across tests: every adapter gets an app id of its own.
_app_ids = itertools.count(90_000)


@pytest.fixture(autouse=True)
def schwab_settings(settings):
    settings.THOR_SCHWAB_API_BASE = API
    settings.THOR_SCHWAB_AUTH_BASE = AUTH
    settings.THOR_SCHWAB_SCOPE = "api"
    settings.THOR_SCHWAB_LEGACY_CLIENT_ID_SUFFIX = False
    settings.THOR_SCHWAB_RATE_WAIT = 0
    settings.THOR_SCHWAB_RETRY_BACKOFF = 0.001


def make_adapter(**overrides) -> SchwabAdapter:
    options = {
        "app_id": next(_app_ids),
        "client_id": "client-id-123",
        "client_secret": "client-secret-456",
        "redirect_uri": CALLBACK,
        "access_token": "access-789",
        "refresh_token": "refresh-abc",
        "account_hash": HASH,
    }
    return SchwabAdapter(**{**options, **overrides})


@pytest.fixture
def schwab():
    return make_adapter()


@pytest.fixture
def mocked():
    with responses.RequestsMock() as mock:
        yield mock


def limit_buy(**overrides) -> OrderRequest:
    fields = {
        "symbol": "AAPL",
        "exchange": "NASDAQ",
        "side": "BUY",
        "quantity": Decimal("10"),
        "order_type": "LIMIT",
        "product": "CNC",
        "price": Decimal("187.5000"),
    }
    return OrderRequest(**{**fields, **overrides})


def schwab_order(order_id: int, *, entered: datetime, symbol="AAPL", instruction="BUY", quantity=10.0, **fields):
    return {
        "orderId": order_id,
        "status": "WORKING",
        "orderType": "LIMIT",
        "duration": "DAY",
        "price": 187.5,
        "quantity": quantity,
        "filledQuantity": 0.0,
        "enteredTime": entered.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "orderLegCollection": [
            {"instruction": instruction, "quantity": quantity, "instrument": {"symbol": symbol, "assetType": "EQUITY"}}
        ],
        **fields,
    }


def basic_credentials(call) -> tuple[str, str]:
    scheme, _, encoded = call.request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    return client_id, secret


# --- the login URL --------------------------------------------------------------------------------


def test_the_login_url_carries_the_raw_client_id_the_exact_callback_the_scope_and_the_state(schwab):
    url = schwab.authorization_url("signed:state/with+chars")

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{AUTH}/v1/oauth/authorize"
    assert query == {
        "response_type": ["code"],
        "client_id": ["client-id-123"],
        "redirect_uri": [CALLBACK],
        "scope": ["api"],
        "state": ["signed:state/with+chars"],
    }


def test_the_legacy_client_id_suffix_is_only_sent_when_turned_on(settings, schwab):
    settings.THOR_SCHWAB_LEGACY_CLIENT_ID_SUFFIX = True

    query = parse_qs(urlsplit(schwab.authorization_url("s")).query)

    assert query["client_id"] == ["client-id-123@AMER.OAUTHAP"]


# --- exchange and refresh -------------------------------------------------------------------------


def token_payload(access="new-access", refresh="new-refresh", **extra):
    return {"access_token": access, "refresh_token": refresh, "expires_in": 1800, "token_type": "Bearer", **extra}


def user_preference(customer_id="CUSTOMER-42"):
    return {"accounts": [], "streamerInfo": [{"schwabClientCustomerId": customer_id}], "offers": []}


def test_exchange_decodes_the_code_authenticates_with_basic_and_names_the_customer(mocked, schwab):
    mocked.post(TOKEN, json=token_payload())
    mocked.get(f"{API}/trader/v1/userPreference", json=user_preference())
    before = datetime.now(UTC)

    tokens = schwab.exchange({"code": "C0.abc.def%40", "session": "s"})

    token_call, preference_call = mocked.calls
    assert basic_credentials(token_call) == ("client-id-123", "client-secret-456")
    assert token_call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_call.request.body) == {
        "grant_type": ["authorization_code"],
        "code": ["C0.abc.def@"],
        "redirect_uri": [CALLBACK],
    }
    assert "client-secret-456" not in token_call.request.body
    assert preference_call.request.headers["Authorization"] == "Bearer new-access"
    assert tokens.access_token == "new-access" and tokens.refresh_token == "new-refresh"
    assert tokens.broker_user_id == "CUSTOMER-42"
    assert timedelta(minutes=29) < tokens.access_expires_at - before <= timedelta(minutes=31)
    assert timedelta(days=6, hours=23) < tokens.refresh_expires_at - before <= timedelta(days=7, minutes=1)


def test_a_code_already_decoded_is_not_decoded_again(mocked, schwab):
    mocked.post(TOKEN, json=token_payload())
    mocked.get(f"{API}/trader/v1/userPreference", json=user_preference())

    schwab.exchange({"code": "C0.abc@"})

    assert parse_qs(mocked.calls[0].request.body)["code"] == ["C0.abc@"]


@pytest.mark.parametrize("code", ["", "   ", "x" * 5000])
def test_a_missing_or_oversized_code_is_refused_without_calling_schwab(mocked, schwab, code):
    with pytest.raises(BrokerError) as error:
        schwab.exchange({"code": code})

    assert error.value.code == BrokerErrorCode.INVALID_INPUT and error.value.permanent
    assert len(mocked.calls) == 0


def test_a_refused_code_is_invalid_input(mocked, schwab):
    mocked.post(TOKEN, status=400, json={"error": "invalid_grant", "error_description": "Bad authorization code"})

    with pytest.raises(BrokerError) as error:
        schwab.exchange({"code": "garbage"})

    assert error.value.code == BrokerErrorCode.INVALID_INPUT and error.value.permanent
    assert error.value.broker_message == "invalid_grant"


def test_a_login_without_a_customer_id_fails_rather_than_linking_nobody(mocked, schwab):
    mocked.post(TOKEN, json=token_payload())
    mocked.get(f"{API}/trader/v1/userPreference", json={"streamerInfo": []})

    with pytest.raises(BrokerError) as error:
        schwab.exchange({"code": "C0.abc@"})

    assert error.value.code == BrokerErrorCode.UNAVAILABLE


def current_tokens(**overrides) -> Tokens:
    fields = {
        "access_token": "old-access",
        "refresh_token": "old-refresh",
        "access_expires_at": datetime.now(UTC) - timedelta(minutes=1),
        "refresh_expires_at": datetime.now(UTC) + timedelta(days=3),
        "broker_user_id": "CUSTOMER-42",
    }
    return Tokens(**{**fields, **overrides})


def test_refresh_rotates_the_refresh_token_and_keeps_the_logins_seven_days(mocked, schwab):
    mocked.post(TOKEN, json=token_payload(access="fresh-access", refresh="rotated-refresh"))
    tokens = current_tokens()

    refreshed = schwab.refresh(tokens)

    assert basic_credentials(mocked.calls[0]) == ("client-id-123", "client-secret-456")
    assert parse_qs(mocked.calls[0].request.body) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["old-refresh"],
    }
    assert refreshed.access_token == "fresh-access" and refreshed.refresh_token == "rotated-refresh"
    assert refreshed.refresh_expires_at == tokens.refresh_expires_at
    assert refreshed.access_expires_at > datetime.now(UTC) + timedelta(minutes=29)
    assert refreshed.broker_user_id == "CUSTOMER-42"


def test_refresh_keeps_the_refresh_token_when_schwab_sends_none(mocked, schwab):
    mocked.post(TOKEN, json={"access_token": "fresh-access", "expires_in": 1800})

    assert schwab.refresh(current_tokens()).refresh_token == "old-refresh"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, {"error": "invalid_client", "error_description": "Unauthorized"}, "invalid_client"),
        (
            400,
            {"error": "refresh_token_authentication_error", "error_description": "Failed refresh token authentication"},
            "refresh_token_authentication_error",
        ),
        (400, {"error": "invalid_grant", "error_description": "expired"}, "invalid_grant"),
    ],
)
def test_a_refused_refresh_means_logging_in_again(mocked, schwab, status, body, reason):
    mocked.post(TOKEN, status=status, json=body)

    with pytest.raises(BrokerError) as error:
        schwab.refresh(current_tokens())

    assert error.value.code == BrokerErrorCode.TOKEN_EXPIRED and error.value.permanent
    assert error.value.broker_message == reason


def test_an_expired_refresh_token_is_not_even_sent(mocked, schwab):
    with pytest.raises(BrokerError) as error:
        schwab.refresh(current_tokens(refresh_expires_at=datetime.now(UTC) - timedelta(seconds=1)))

    assert error.value.code == BrokerErrorCode.TOKEN_EXPIRED and error.value.permanent
    assert error.value.broker_message == "refresh_token_expired"
    assert len(mocked.calls) == 0


def test_a_failing_token_service_is_transient_and_never_retried(mocked, schwab):
    # A refresh that reached Schwab has rotated the token it spent: sending it again would fail.
    mocked.post(TOKEN, status=503, body="<html><title>Service Unavailable</title></html>")

    with pytest.raises(BrokerError) as error:
        schwab.refresh(current_tokens())

    assert error.value.code == BrokerErrorCode.UNAVAILABLE and not error.value.permanent
    assert len(mocked.calls) == 1


# --- accounts and balances ------------------------------------------------------------------------

MARGIN_ACCOUNT = {
    "securitiesAccount": {
        "type": "MARGIN",
        "accountNumber": "12345678",
        "currentBalances": {
            "cashBalance": 5000.125,
            "availableFunds": 20000.5,
            "buyingPower": 40001.0,
            "equity": 30000.0,
            "liquidationValue": 30000.0,
            "maintenanceRequirement": 2500.0,
        },
        "initialBalances": {"cashBalance": 4000.0, "liquidationValue": 29000.0, "accountValue": 29000.0},
    }
}
CASH_ACCOUNT = {
    "securitiesAccount": {
        "type": "CASH",
        "accountNumber": "87654321",
        # A cash account's current balances carry no cashBalance or buyingPower, and here no liquidationValue.
        "currentBalances": {"totalCash": 12000.0, "cashAvailableForTrading": 9000.0, "unsettledCash": 3000.0},
        "initialBalances": {"cashBalance": 12500.0, "liquidationValue": 18000.0},
    }
}


def test_margin_funds_come_from_the_margin_balances(mocked, schwab):
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=MARGIN_ACCOUNT)

    funds = schwab.funds()

    assert funds.currency == "USD"
    assert funds.cash == Decimal("5000.13")
    assert funds.available == Decimal("20000.50")
    assert funds.buying_power == Decimal("40001.00")
    assert funds.net_liquidation == Decimal("30000.00")
    assert funds.utilised == Decimal("2500.00")


def test_cash_funds_spend_only_the_cash_available_for_trading(mocked, schwab):
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=CASH_ACCOUNT)

    funds = schwab.funds()

    assert funds.cash == Decimal("12000.00")
    assert funds.available == funds.buying_power == Decimal("9000.00")
    assert funds.net_liquidation == Decimal("18000.00")
    assert funds.utilised == Decimal("3000.00")


def test_account_calls_need_an_account_hash(mocked):
    with pytest.raises(BrokerError) as error:
        make_adapter(account_hash="").funds()

    assert error.value.code == BrokerErrorCode.INVALID_INPUT
    assert len(mocked.calls) == 0


def test_account_numbers_pair_each_hash_with_its_number_and_kind(mocked, schwab):
    mocked.get(
        f"{API}/trader/v1/accounts/accountNumbers",
        json=[{"accountNumber": "12345678", "hashValue": "H1"}, {"accountNumber": "87654321", "hashValue": "H2"}],
    )
    mocked.get(f"{API}/trader/v1/accounts", json=[MARGIN_ACCOUNT, CASH_ACCOUNT])

    refs = schwab.account_numbers()

    assert [(ref.broker_account_id, ref.account_number, ref.kind) for ref in refs] == [
        ("H1", "12345678", "MARGIN"),
        ("H2", "87654321", "CASH"),
    ]
    assert "12345678" not in refs[0].display_name and refs[0].display_name.endswith("5678")


def test_positions_and_holdings(mocked, schwab):
    account = {
        "securitiesAccount": {
            "type": "MARGIN",
            "accountNumber": "12345678",
            "positions": [
                {
                    "longQuantity": 10.0,
                    "shortQuantity": 0.0,
                    "averagePrice": 150.0,
                    "averageLongPrice": 150.0,
                    "marketValue": 1900.0,
                    "longOpenProfitLoss": 400.0,
                    "currentDayProfitLoss": -12.5,
                    "instrument": {"assetType": "EQUITY", "symbol": "AAPL", "cusip": "037833100"},
                },
                {
                    "longQuantity": 0.0,
                    "shortQuantity": 5.0,
                    "averagePrice": 100.0,
                    "marketValue": -450.0,
                    "shortOpenProfitLoss": 50.0,
                    "currentDayProfitLoss": 1.0,
                    "instrument": {"assetType": "EQUITY", "symbol": "KO"},
                },
            ],
        }
    }
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=account)

    apple, short = schwab.positions()
    (holding,) = schwab.holdings()

    assert mocked.calls[0].request.params == {"fields": "positions"}
    assert (apple.symbol, apple.quantity, apple.last_price, apple.value) == (
        "AAPL",
        Decimal("10"),
        Decimal("190.0000"),
        Decimal("1900.00"),
    )
    assert apple.unrealised_pnl == Decimal("400.00") and apple.day_pnl == Decimal("-12.50")
    assert (short.quantity, short.last_price, short.unrealised_pnl) == (
        Decimal("-5"),
        Decimal("90.0000"),
        Decimal("50.00"),
    )
    assert (holding.symbol, holding.quantity, holding.value, holding.pnl) == (
        "AAPL",
        Decimal("10"),
        Decimal("1900.00"),
        Decimal("400.00"),
    )


# --- orders ---------------------------------------------------------------------------------------


def test_place_sends_a_single_equity_leg_and_reads_the_id_from_location(mocked, schwab):
    mocked.post(ORDERS, status=201, headers={"Location": f"{ORDERS}/1000000123"})

    result = schwab.place(limit_buy())

    sent = json.loads(mocked.calls[0].request.body)
    assert sent == {
        "session": "NORMAL",
        "duration": "DAY",
        "orderType": "LIMIT",
        "orderStrategyType": "SINGLE",
        "price": 187.5,
        "orderLegCollection": [
            {"instruction": "BUY", "quantity": 10, "instrument": {"symbol": "AAPL", "assetType": "EQUITY"}}
        ],
    }
    assert result.broker_order_id == "1000000123" and result.status == "PENDING"


@pytest.mark.parametrize(
    ("order_type", "validity", "schwab_type", "duration", "prices"),
    [
        ("MARKET", "DAY", "MARKET", "DAY", {}),
        ("SL", "GTC", "STOP_LIMIT", "GOOD_TILL_CANCEL", {"price": 187.5, "stopPrice": 186.0}),
        ("SL-M", "DAY", "STOP", "DAY", {"stopPrice": 186.0}),
    ],
)
def test_unified_order_types_and_validities_map_to_schwabs(
    mocked, schwab, order_type, validity, schwab_type, duration, prices
):
    mocked.post(ORDERS, status=201, headers={"Location": f"{ORDERS}/7"})

    schwab.place(limit_buy(order_type=order_type, validity=validity, trigger_price=Decimal("186")))

    sent = json.loads(mocked.calls[0].request.body)
    assert (sent["orderType"], sent["duration"]) == (schwab_type, duration)
    assert {name: sent[name] for name in ("price", "stopPrice") if name in sent} == prices


@pytest.mark.parametrize(
    "changes",
    [
        {"side": "SELL_SHORT"},
        {"side": "BUY_TO_COVER"},
        {"quantity": Decimal("1.5")},
        {"quantity": Decimal("0")},
        {"quantity": Decimal("-3")},
        {"validity": "IOC"},
        {"order_type": "TRAILING_STOP"},
        {"price": None},
        {"price": Decimal("-1")},
        {"symbol": "AAPL; DROP TABLE"},
        {"symbol": ""},
    ],
)
def test_orders_schwab_would_refuse_are_refused_before_sending(mocked, schwab, changes):
    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy(**changes))

    assert error.value.code == BrokerErrorCode.INVALID_INPUT and error.value.permanent
    assert len(mocked.calls) == 0


@pytest.mark.parametrize("location", [None, "", "https://api.schwab.test/trader/v1/accounts/x/orders/", "garbage"])
def test_a_placement_schwab_took_without_naming_it_is_unconfirmed_never_guessed_never_sent_again(
    mocked, schwab, location
):
    mocked.post(ORDERS, status=201, headers={"Location": location} if location is not None else {})

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    # Which order of the book it made is for the caller to settle: it alone knows what its other orders hold.
    assert error.value.code == BrokerErrorCode.UNCONFIRMED
    assert [call.request.method for call in mocked.calls] == ["POST"]


def test_placement_candidates_are_every_order_of_the_same_shape_entered_since_oldest_first(mocked, schwab):
    now = datetime.now(UTC)
    mocked.get(
        ORDERS,
        json=[
            schwab_order(7, entered=now + timedelta(seconds=2)),
            schwab_order(1, entered=now - timedelta(minutes=5)),  # the same terms, but earlier
            schwab_order(2, entered=now, symbol="MSFT"),
            schwab_order(3, entered=now, instruction="SELL"),
            schwab_order(4, entered=now, quantity=11.0),
            schwab_order(5, entered=now, price=187.51),
            schwab_order(6, entered=now, status="FILLED", filledQuantity=10.0),
        ],
    )

    candidates = schwab.placement_candidates(limit_buy(), now)

    assert [candidate.broker_order_id for candidate in candidates] == ["6", "7"]
    assert all(candidate.placed_at is not None for candidate in candidates)
    since = datetime.fromisoformat(mocked.calls[0].request.params["fromEnteredTime"].replace("Z", "+00:00"))
    assert now - timedelta(seconds=10) < since <= now


def test_placement_candidates_of_an_unreadable_book_are_an_error_never_an_empty_list(mocked, schwab):
    mocked.get(ORDERS, status=401, json={"message": "Client not authorized", "errors": ["Client not authorized"]})

    with pytest.raises(BrokerError):
        schwab.placement_candidates(limit_buy(), datetime.now(UTC))


def test_a_server_error_on_place_is_never_retried(mocked, schwab):
    mocked.post(ORDERS, status=500, json={"message": "Internal error", "errors": ["Internal error"]})

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    assert error.value.code == BrokerErrorCode.UNAVAILABLE
    assert len(mocked.calls) == 1


def test_a_timeout_on_place_is_never_retried(mocked, schwab):
    mocked.post(ORDERS, body=requests.Timeout("slow"))

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    assert error.value.code == BrokerErrorCode.TIMEOUT
    assert len(mocked.calls) == 1


def test_a_rejected_order_says_why(mocked, schwab):
    mocked.post(
        ORDERS,
        status=400,
        json={"message": "The order exceeds buying power", "errors": ["The order exceeds buying power"]},
    )

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    assert error.value.code == BrokerErrorCode.REJECTED and error.value.permanent
    assert "buying power" in error.value.broker_message


def test_replace_answers_the_new_orders_id(mocked, schwab):
    now = datetime.now(UTC)
    mocked.get(f"{ORDERS}/500", json=schwab_order(500, entered=now))
    mocked.put(f"{ORDERS}/500", status=201, headers={"Location": f"{ORDERS}/501"})

    result = schwab.modify("500", {"price": Decimal("188.25"), "quantity": Decimal("12")})

    sent = json.loads(mocked.calls[1].request.body)
    assert sent["price"] == 188.25 and sent["orderLegCollection"][0]["quantity"] == 12
    assert sent["orderLegCollection"][0]["instrument"]["symbol"] == "AAPL"
    assert result.broker_order_id == "501" and result.status == "PENDING"


def test_replace_without_location_is_unconfirmed_never_matched_here(mocked, schwab):
    now = datetime.now(UTC)
    mocked.get(f"{ORDERS}/500", json=schwab_order(500, entered=now, price=188.25))
    mocked.put(f"{ORDERS}/500", status=201)

    with pytest.raises(BrokerError) as error:
        schwab.modify("500", {"validity": "DAY"})

    assert error.value.code == BrokerErrorCode.UNCONFIRMED
    assert [call.request.method for call in mocked.calls] == ["GET", "PUT"]


@pytest.mark.parametrize("changes", [{"product": "MIS"}, {"symbol": "MSFT"}, {"tag": "x"}])
def test_replace_refuses_what_schwab_cannot_change(mocked, schwab, changes):
    with pytest.raises(BrokerError) as error:
        schwab.modify("500", changes)

    assert error.value.code == BrokerErrorCode.INVALID_INPUT
    assert len(mocked.calls) == 0


@pytest.mark.parametrize("order_id", ["../accountNumbers", "12a", "", "1" * 40])
def test_hostile_order_ids_never_reach_a_url(mocked, schwab, order_id):
    with pytest.raises(BrokerError) as error:
        schwab.cancel(order_id)

    assert error.value.code == BrokerErrorCode.NOT_FOUND
    assert len(mocked.calls) == 0


def test_cancel_deletes_the_order(mocked, schwab):
    mocked.delete(f"{ORDERS}/500", status=200)

    assert schwab.cancel("500").broker_order_id == "500"
    assert mocked.calls[0].request.method == "DELETE"


def test_orders_read_schwabs_statuses_in_thors_terms(mocked, schwab):
    now = datetime.now(UTC)
    filled = schwab_order(
        1,
        entered=now,
        status="FILLED",
        filledQuantity=10.0,
        orderActivityCollection=[
            {"executionLegs": [{"quantity": 4.0, "price": 187.0}, {"quantity": 6.0, "price": 187.5}]}
        ],
    )
    stop = schwab_order(2, entered=now, orderType="STOP", stopPrice=180.0, duration="GOOD_TILL_CANCEL")
    mocked.get(
        ORDERS,
        json=[
            filled,
            stop,
            schwab_order(3, entered=now, status="CANCELED"),
            schwab_order(4, entered=now, status="REPLACED"),
            schwab_order(5, entered=now, status="PENDING_ACKNOWLEDGEMENT"),
        ],
    )

    results = schwab.orders()

    assert [result.status for result in results] == ["COMPLETE", "TRIGGER PENDING", "CANCELLED", "CANCELLED", "PENDING"]
    assert results[0].average_price == Decimal("187.3000") and results[0].filled_quantity == Decimal("10")
    assert (results[1].order_type, results[1].validity, results[1].trigger_price) == (
        "SL-M",
        "GTC",
        Decimal("180.0000"),
    )
    assert results[0].placed_at == now.replace(microsecond=0)


# --- errors, retries and budgets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kwargs", "code", "words"),
    [
        (
            400,
            {"json": {"errors": [{"id": "e1", "status": "400", "title": "Bad Request", "detail": "Bad symbol"}]}},
            BrokerErrorCode.INVALID_INPUT,
            "Bad Request Bad symbol",
        ),
        (
            401,
            {"json": {"error": "invalid_client", "error_description": "Unauthorized"}},
            BrokerErrorCode.TOKEN_EXPIRED,
            "Unauthorized",
        ),
        (
            401,
            {
                "json": {
                    "fault": {
                        "faultstring": "Invalid access token",
                        "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
                    }
                }
            },
            BrokerErrorCode.TOKEN_EXPIRED,
            "Invalid access token",
        ),
        (
            500,
            {
                "json": {
                    "fault": {
                        "faultstring": "Rate limit quota violation",
                        "detail": {"errorcode": "policies.ratelimit.QuotaViolation"},
                    }
                }
            },
            BrokerErrorCode.RATE_LIMITED,
            "Rate limit quota violation",
        ),
        (
            502,
            {"body": "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"},
            BrokerErrorCode.UNAVAILABLE,
            "502 Bad Gateway",
        ),
        (
            403,
            {"json": {"message": "Forbidden", "errors": ["No trading"]}},
            BrokerErrorCode.PERMISSION_DENIED,
            "Forbidden",
        ),
        (404, {"json": {"message": "Not found", "errors": []}}, BrokerErrorCode.NOT_FOUND, "Not found"),
    ],
)
def test_every_error_shape_becomes_one_broker_error(mocked, settings, schwab, status, kwargs, code, words):
    settings.THOR_SCHWAB_READ_RETRIES = 0
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=status, **kwargs)

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    assert error.value.code == code
    assert error.value.broker_message == words


def test_an_access_token_refusal_is_worth_a_refresh(mocked, schwab):
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=401, json={"message": "expired", "errors": ["expired"]})

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    # Not permanent: only the token endpoint can say a refresh will not help.
    assert error.value.code == BrokerErrorCode.TOKEN_EXPIRED and not error.value.permanent


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("", 1.0), ("soon", 1.0)])
def test_429_says_when_to_come_back_and_is_not_retried(mocked, schwab, header, expected):
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=429, headers={"Retry-After": header}, json={})

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    assert error.value.code == BrokerErrorCode.RATE_LIMITED and error.value.retry_after == expected
    assert len(mocked.calls) == 1


def test_429_with_an_http_date(mocked, schwab):
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=429, headers={"Retry-After": later}, json={})

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    assert 25 <= error.value.retry_after <= 31


def test_reads_are_retried_on_server_and_network_errors(mocked, schwab):
    url = f"{API}/trader/v1/accounts/{HASH}"
    mocked.get(url, status=503, body="<html><title>down</title></html>")
    mocked.get(url, body=requests.ConnectionError("reset"))
    mocked.get(url, json=MARGIN_ACCOUNT)

    assert schwab.funds().buying_power == Decimal("40001.00")
    assert len(mocked.calls) == 3


def test_reads_give_up_after_the_retries(mocked, settings, schwab):
    settings.THOR_SCHWAB_READ_RETRIES = 2
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=500, json={"message": "boom", "errors": ["boom"]})

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    assert error.value.code == BrokerErrorCode.UNAVAILABLE and error.value.broker_message == "boom"
    assert len(mocked.calls) == 3


def test_cancel_is_never_retried(mocked, schwab):
    mocked.delete(f"{ORDERS}/500", status=503, json={"message": "down", "errors": ["down"]})

    with pytest.raises(BrokerError):
        schwab.cancel("500")

    assert len(mocked.calls) == 1


def test_the_request_budget_is_shared_by_every_adapter_of_the_app(mocked, settings):
    settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 2
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=MARGIN_ACCOUNT)
    app_id = next(_app_ids)
    make_adapter(app_id=app_id).funds()
    make_adapter(app_id=app_id, access_token="another-user").funds()

    with pytest.raises(BrokerError) as error:
        make_adapter(app_id=app_id).funds()

    assert error.value.code == BrokerErrorCode.RATE_LIMITED and error.value.retry_after == 30
    assert len(mocked.calls) == 2
    # Another app has a budget of its own.
    make_adapter().funds()


def test_in_the_background_a_spent_budget_fails_at_once_where_a_user_call_waits(mocked, settings):
    settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 60  # a token a second
    settings.THOR_SCHWAB_RATE_WAIT = 1.5
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=MARGIN_ACCOUNT)
    app_id = next(_app_ids)
    for _ in range(60):
        make_adapter(app_id=app_id).funds()

    started = time.monotonic()
    with pytest.raises(BrokerError) as error:
        make_adapter(app_id=app_id).in_background().funds()
    background_seconds = time.monotonic() - started
    started = time.monotonic()
    make_adapter(app_id=app_id).funds()  # waits for the next token, as before

    assert error.value.code == BrokerErrorCode.RATE_LIMITED and background_seconds < 0.2
    assert time.monotonic() - started < 1.5
    assert len(mocked.calls) == 61


def test_in_the_background_a_failed_read_is_not_retried(mocked, settings):
    settings.THOR_SCHWAB_READ_RETRIES = 2
    mocked.get(ORDERS, status=503, json={"message": "down", "errors": ["down"]})

    with pytest.raises(BrokerError) as error:
        make_adapter().in_background().orders()

    assert error.value.code == BrokerErrorCode.UNAVAILABLE
    assert len(mocked.calls) == 1


def test_the_daily_order_budget_stops_orders_but_not_reads(mocked, settings, schwab):
    settings.THOR_SCHWAB_ORDERS_PER_DAY = 1
    mocked.post(ORDERS, status=201, headers={"Location": f"{ORDERS}/1"})
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=MARGIN_ACCOUNT)
    schwab.place(limit_buy())

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    assert error.value.code == BrokerErrorCode.RATE_LIMITED
    assert sum(call.request.method == "POST" for call in mocked.calls) == 1
    schwab.funds()


# --- market data and the rest ---------------------------------------------------------------------


def test_quotes_are_keyed_by_the_reference_as_given(mocked, schwab):
    mocked.get(
        f"{API}/marketdata/v1/quotes",
        json={
            "AAPL": {
                "symbol": "AAPL",
                "quote": {
                    "lastPrice": 190.12,
                    "openPrice": 189.0,
                    "highPrice": 191.0,
                    "lowPrice": 188.5,
                    "closePrice": 189.5,
                    "totalVolume": 1234,
                    "tradeTime": 1767225600000,
                },
            },
            "errors": {"invalidSymbols": ["NOPE"]},
        },
    )

    quotes = schwab.quotes(["NASDAQ:AAPL", "AAPL", "NOPE"])

    assert mocked.calls[0].request.params == {"symbols": "AAPL,NOPE", "fields": "quote"}
    assert set(quotes) == {"NASDAQ:AAPL", "AAPL"}
    assert quotes["NASDAQ:AAPL"].last_price == Decimal("190.1200") and quotes["NASDAQ:AAPL"].exchange == "NASDAQ"
    assert quotes["AAPL"].timestamp == datetime(2026, 1, 1, tzinfo=UTC) and quotes["AAPL"].volume == 1234


def test_no_session_means_no_call(mocked):
    with pytest.raises(BrokerError) as error:
        make_adapter(access_token="").funds()

    assert error.value.code == BrokerErrorCode.TOKEN_EXPIRED
    assert len(mocked.calls) == 0


def test_repr_shows_no_credentials(schwab):
    assert not {"client-secret-456", "access-789", "refresh-abc"} & set(repr(schwab).split())
    assert "secret" not in repr(schwab) and "access-789" not in repr(schwab)


@pytest.mark.django_db
def test_the_registry_builds_a_schwab_adapter_for_a_connection_and_account(alice):
    app = BrokerAppFactory(tenant=alice.tenant, kind=BrokerKind.SCHWAB, api_key="schwab-client", redirect_uri=CALLBACK)
    connection = BrokerConnectionFactory(user=alice, app=app, access_token="acc", refresh_token="ref")

    adapter = adapter_for(connection, account_id=HASH)

    assert isinstance(adapter, SchwabAdapter)
    assert (adapter.client_id, adapter.redirect_uri, adapter.account_hash) == ("schwab-client", CALLBACK, HASH)
    assert adapter_for(connection).account_hash == ""


def test_the_customer_id_is_read_from_a_preference_list_too(mocked, schwab):
    # The spec declares /userPreference as a list; Schwab answers one object. Either names the customer.
    mocked.post(TOKEN, json=token_payload())
    mocked.get(f"{API}/trader/v1/userPreference", json=[user_preference("LISTED-7")])

    assert schwab.exchange({"code": "C0.abc@"}).broker_user_id == "LISTED-7"
