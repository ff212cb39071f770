"""Kite lets one order be modified 25 times and answers the 26th with a NetworkException, which reads as an
outage. Thor counts an order's modifications and refuses the next one itself (409), unsent; were Kite to refuse
one first, its answer is final and named, never "Kite is unavailable". Over real HTTP with the sandbox, which
caps modifications as Kite does. Paper orders have no such cap."""

from decimal import Decimal

import pytest
import requests

from accounts.models import Order
from accounts.tests.conftest import order_body, place
from brokers.adapters import kite_limits
from brokers.adapters.kite import KiteAdapter
from brokers.tests.sandbox_fixtures import link, sandbox_calls

MODIFY = "PUT /orders/regular/{}"


@pytest.fixture
def live(sandbox, alice_client, settings):
    settings.THOR_KITE_RATE_WAIT = 5  # 26 order calls at Kite's 10 a second: wait for room, never refuse
    requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1500.0}, timeout=5).raise_for_status()
    return link(alice_client)


def resting_order(client, account) -> int:
    response = place(client, account=account.pk, **order_body(order_type="LIMIT", price="1400.00"))
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def modify(client, account, order_id, price: Decimal):
    return client.patch(f"/api/accounts/{account.pk}/orders/{order_id}", {"price": str(price)}, format="json")


def test_kites_limit_is_twenty_five():
    assert kite_limits.MODIFICATIONS_PER_ORDER == 25


def test_the_twenty_sixth_modification_is_refused_unsent_and_the_order_still_works(alice_client, sandbox, live):
    order_id = resting_order(alice_client, live)
    broker_order_id = Order.objects.get(pk=order_id).broker_order_id
    for step in range(1, 26):
        changed = modify(alice_client, live, order_id, Decimal("1400.00") - step)
        assert changed.status_code == 200, (step, changed.json())

    refused = modify(alice_client, live, order_id, Decimal("1350.00"))

    assert refused.status_code == 409 and refused.json()["code"] == "order_modification_limit"
    assert "cancel it and place a new one" in refused.json()["detail"]
    assert sandbox_calls(sandbox, MODIFY.format(broker_order_id)) == 25
    assert Order.objects.get(pk=order_id).price == Decimal("1375.00")
    cancelled = alice_client.delete(f"/api/accounts/{live.pk}/orders/{order_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"


def test_kites_own_refusal_is_final_and_named_not_an_outage(alice_client, sandbox, live, monkeypatch):
    # An order modified elsewhere (Kite's web app) reaches the cap before Thor counts it.
    monkeypatch.setattr(KiteAdapter, "modifications_per_order", None)
    order_id = resting_order(alice_client, live)
    broker_order = sandbox.state.kite.accounts["AB1234"].orders[Order.objects.get(pk=order_id).broker_order_id]
    modified = [{**broker_order.current, "status": "MODIFIED"}] * 25
    broker_order.history[-1:-1] = modified

    refused = modify(alice_client, live, order_id, Decimal("1390.00"))

    assert refused.status_code == 400, refused.json()
    assert refused.json()["code"] == "broker_invalid_input"
    assert "Maximum allowed order modifications exceeded" in refused.json()["detail"]
    assert Order.objects.get(pk=order_id).price == Decimal("1400.00")


def test_a_paper_order_may_be_modified_more_than_twenty_five_times(alice_client):
    response = place(alice_client, **order_body(order_type="LIMIT", price="1000.00"))
    order_id = response.json()["id"]

    for step in range(1, 27):
        changed = alice_client.patch(
            f"/api/accounts/primary/orders/{order_id}", {"price": str(Decimal("1000.00") - step)}, format="json"
        )
        assert changed.status_code == 200, (step, changed.json())
