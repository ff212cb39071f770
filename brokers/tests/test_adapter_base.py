"""The contract's default behaviour, shown through Kite, whose order book keeps each order's tag."""

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import responses

from brokers.adapters.errors import BrokerError
from brokers.adapters.kite import KiteAdapter
from brokers.adapters.types import OrderRequest
from brokers.tests.kite_fixtures import kite_error, kite_fixture

ROOT = "https://kite.test"
_app_ids = itertools.count(95_000)


@pytest.fixture(autouse=True)
def kite_settings(settings):
    settings.THOR_KITE_API_ROOT = ROOT
    settings.THOR_KITE_RATE_WAIT = 0


@pytest.fixture
def kite():
    return KiteAdapter(app_id=next(_app_ids), api_key="apikey123", api_secret="secret456", access_token="token789")


@pytest.fixture
def mocked():
    with responses.RequestsMock() as mock:
        yield mock


def request(tag: str) -> OrderRequest:
    return OrderRequest(
        symbol="INFY", exchange="NSE", side="BUY", quantity=Decimal(1), order_type="MARKET", product="CNC", tag=tag
    )


def test_find_placed_is_the_order_carrying_the_requests_tag(mocked, kite):
    mocked.get(f"{ROOT}/orders", json=kite_fixture("orders.json"))

    found = kite.find_placed(request("connect test order2"), datetime.now(UTC))

    assert found.broker_order_id == "9000000000000000"


def test_find_placed_says_none_when_the_book_was_read_and_has_no_such_tag(mocked, kite):
    mocked.get(f"{ROOT}/orders", json=kite_fixture("orders.json"))

    assert kite.find_placed(request("never-sent"), datetime.now(UTC)) is None


def test_an_untagged_request_cannot_be_found_and_costs_no_call(mocked, kite):
    assert kite.find_placed(request(""), datetime.now(UTC)) is None
    assert len(mocked.calls) == 0


def test_an_unreadable_book_is_an_error_never_a_none(mocked, kite):
    mocked.get(f"{ROOT}/orders", status=503, json=kite_error("Down", "NetworkException"))

    with pytest.raises(BrokerError):
        kite.find_placed(request("connect test order1"), datetime.now(UTC))
