"""The fake Schwab at the HTTP boundary (`responses`) the Schwab adapter tests share: its addresses, a
fresh adapter per test, and the payloads Schwab answers with."""

import base64
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import responses

from brokers.adapters.schwab import SchwabAdapter
from brokers.adapters.types import OrderRequest, Tokens

API = "https://api.schwab.test"
AUTH = "https://auth.schwab.test"
CALLBACK = "https://app.acme.test/schwab/callback"
HASH = "A" * 64
ORDERS = f"{API}/trader/v1/accounts/{HASH}/orders"
TOKEN = f"{AUTH}/v1/oauth/token"
# Rate buckets live in Redis across tests: every adapter gets an app id of its own.
app_ids = itertools.count(90_000)


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
        "app_id": next(app_ids),
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


def token_payload(access="new-access", refresh="new-refresh", **extra):
    return {"access_token": access, "refresh_token": refresh, "expires_in": 1800, "token_type": "Bearer", **extra}


def user_preference(customer_id="CUSTOMER-42"):
    return {"accounts": [], "streamerInfo": [{"schwabClientCustomerId": customer_id}], "offers": []}


def current_tokens(**overrides) -> Tokens:
    fields = {
        "access_token": "old-access",
        "refresh_token": "old-refresh",
        "access_expires_at": datetime.now(UTC) - timedelta(minutes=1),
        "refresh_expires_at": datetime.now(UTC) + timedelta(days=3),
        "broker_user_id": "CUSTOMER-42",
    }
    return Tokens(**{**fields, **overrides})


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
