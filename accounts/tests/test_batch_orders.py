from decimal import Decimal

import pytest

from accounts.models import Order, TradingAccount
from accounts.tests.conftest import order_body

pytestmark = pytest.mark.django_db

URL = "/api/accounts/primary/batch-orders"


def test_every_leg_placed(alice_client, alice):
    legs = [order_body(), order_body(tradingsymbol="SBIN", quantity=5), order_body(order_type="LIMIT", price="1400.00")]

    response = alice_client.post(URL, {"orders": legs}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "placed"
    assert [leg["outcome"] for leg in body["legs"]] == ["placed"] * 3
    assert [leg["order"]["status"] for leg in body["legs"]] == ["COMPLETE", "COMPLETE", "OPEN"]
    assert TradingAccount.objects.get(user=alice, is_primary=True).cash == Decimal("81000.00")


def test_an_invalid_leg_sends_nothing(alice_client):
    legs = [order_body(), order_body(quantity=-1), order_body(exchange="MOON")]

    response = alice_client.post(URL, {"orders": legs}, format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"orders.1.quantity"}  # MOON is checked after the shapes, so never reached
    assert not Order.objects.exists()


@pytest.mark.parametrize("leg", ["x", 7, None, ["INFY"], True])
def test_a_leg_that_is_not_an_object_is_named_by_its_index(alice_client, leg):
    response = alice_client.post(URL, {"orders": [order_body(), leg]}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["orders.1"]
    assert all(isinstance(message, str) for message in errors["orders.1"]) and errors["orders.1"]
    assert not Order.objects.exists()


def test_batch_errors_are_flat_lists_of_strings_whatever_the_legs(alice_client):
    legs = [order_body(price="-1"), "x", order_body(quantity="many", junk={"deep": [1]}), order_body()]

    response = alice_client.post(URL, {"orders": legs}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"orders.0.price", "orders.1", "orders.2.quantity"} <= set(errors)
    assert all(isinstance(messages, list) and all(isinstance(m, str) for m in messages) for messages in errors.values())


def test_paper_batch_rolls_back_when_a_later_leg_cannot_be_afforded(alice_client, alice):
    legs = [order_body(quantity=40), order_body(quantity=40)]

    response = alice_client.post(URL, {"orders": legs}, format="json")

    assert response.status_code == 400
    assert "orders.1.quantity" in response.json()["errors"]
    assert not Order.objects.exists()
    account = TradingAccount.objects.get(user=alice, is_primary=True)
    assert account.cash == Decimal("100000.00") and not account.paper_positions.exists()


def test_sell_within_the_batch_uses_the_earlier_buy(alice_client):
    legs = [order_body(quantity=5), order_body(transaction_type="SELL", quantity=5)]
    assert alice_client.post(URL, {"orders": legs}, format="json").status_code == 201


@pytest.mark.parametrize("body", [{"orders": []}, {"orders": [order_body()] * 21}, {"orders": "x"}, {}, [order_body()]])
def test_bad_batch_shapes(alice_client, body):
    assert alice_client.post(URL, body, format="json").status_code == 400
    assert not Order.objects.exists()


def test_batch_idempotency(alice_client):
    legs = {"orders": [order_body(quantity=1)]}
    first = alice_client.post(URL, legs, format="json", HTTP_IDEMPOTENCY_KEY="b")
    second = alice_client.post(URL, legs, format="json", HTTP_IDEMPOTENCY_KEY="b")
    other = alice_client.post(URL, {"orders": [order_body(quantity=2)]}, format="json", HTTP_IDEMPOTENCY_KEY="b")

    assert first.status_code == second.status_code == 201
    assert first.json()["legs"][0]["order"]["id"] == second.json()["legs"][0]["order"]["id"]
    assert other.status_code == 422
    assert Order.objects.count() == 1
