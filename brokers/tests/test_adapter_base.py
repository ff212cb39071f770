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


def test_placement_candidates_are_the_orders_carrying_the_requests_tag(mocked, kite):
    mocked.get(f"{ROOT}/orders", json=kite_fixture("orders.json"))

    found = kite.placement_candidates(request("connect test order2"), datetime.now(UTC))

    assert [result.broker_order_id for result in found] == ["9000000000000000"]


def test_no_candidate_when_the_book_was_read_and_has_no_such_tag(mocked, kite):
    mocked.get(f"{ROOT}/orders", json=kite_fixture("orders.json"))

    assert kite.placement_candidates(request("never-sent"), datetime.now(UTC)) == []


def test_an_untagged_request_cannot_be_found_and_costs_no_call(mocked, kite):
    assert kite.placement_candidates(request(""), datetime.now(UTC)) == []
    assert len(mocked.calls) == 0


def test_an_unreadable_book_is_an_error_never_an_empty_list(mocked, kite):
    mocked.get(f"{ROOT}/orders", status=503, json=kite_error("Down", "NetworkException"))

    with pytest.raises(BrokerError):
        kite.placement_candidates(request("connect test order1"), datetime.now(UTC))


def test_one_order_is_the_last_entry_of_its_history(mocked, kite):
    history = kite_fixture("orders.json")["data"][:1]
    mocked.get(f"{ROOT}/orders/{history[0]['order_id']}", json={"status": "success", "data": history})

    assert kite.order(str(history[0]["order_id"])).broker_order_id == str(history[0]["order_id"])
