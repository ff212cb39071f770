"""The Schwab adapter (brokers.adapters.schwab.adapter) with `responses` at the HTTP boundary: the login,
tokens, account calls, placing, finding, replacing and cancelling orders."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.schwab import SchwabAdapter
from brokers.models import BrokerKind
from brokers.registry import adapter_for
from brokers.tests import schwab_wire
from brokers.tests.factories import BrokerAppFactory, BrokerConnectionFactory
from brokers.tests.schwab_wire import (
    API,
    AUTH,
    CALLBACK,
    HASH,
    ORDERS,
    TOKEN,
    basic_credentials,
    current_tokens,
    limit_buy,
    make_adapter,
    schwab_order,
    token_payload,
    user_preference,
)

# The fake Schwab's fixtures, by the names pytest finds them under.
schwab_settings = schwab_wire.schwab_settings
mocked = schwab_wire.mocked
schwab = schwab_wire.schwab


# --- the login URL ----------------------------------------------------------------------------


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


# --- exchange and refresh ---------------------------------------------------------------------


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


def test_the_customer_id_is_read_from_a_preference_list_too(mocked, schwab):
    # The spec declares /userPreference as a list; Schwab answers one object. Either names the customer.
    mocked.post(TOKEN, json=token_payload())
    mocked.get(f"{API}/trader/v1/userPreference", json=[user_preference("LISTED-7")])

    assert schwab.exchange({"code": "C0.abc@"}).broker_user_id == "LISTED-7"


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


# --- accounts ---------------------------------------------------------------------------------


def test_account_calls_need_an_account_hash(mocked):
    with pytest.raises(BrokerError) as error:
        make_adapter(account_hash="").funds()

    assert error.value.code == BrokerErrorCode.INVALID_INPUT
    assert len(mocked.calls) == 0


# --- orders -----------------------------------------------------------------------------------


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


def test_cancel_deletes_the_order(mocked, schwab):
    mocked.delete(f"{ORDERS}/500", status=200)

    assert schwab.cancel("500").broker_order_id == "500"
    assert mocked.calls[0].request.method == "DELETE"


# --- the rest ---------------------------------------------------------------------------------


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
