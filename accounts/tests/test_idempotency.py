import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import Order, TradingAccount
from accounts.tests.conftest import place
from identity.tests.factories import TenantFactory, UserFactory
from identity.tokens import token_pair_for

pytestmark = pytest.mark.django_db


def test_same_key_same_body_returns_the_first_order(alice_client):
    first = place(alice_client, key="k-1")
    second = place(alice_client, key="k-1")

    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert Order.objects.count() == 1


def test_same_key_other_body_is_422(alice_client):
    place(alice_client, key="k-1")
    response = place(alice_client, key="k-1", quantity=11)

    assert response.status_code == 422 and response.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


def test_keys_are_per_account(alice_client, bob_client):
    assert place(alice_client, key="shared").status_code == 201
    assert place(bob_client, key="shared").status_code == 201
    assert Order.objects.count() == 2


def test_a_rejected_request_leaves_the_key_free(alice_client):
    assert place(alice_client, key="k-2", quantity=1000).status_code == 400
    assert place(alice_client, key="k-2", quantity=1000).status_code == 400
    assert not Order.objects.exists()


@pytest.mark.parametrize("key", ["k' OR '1'='1", "k'); DROP TABLE accounts_order;--", "%s", 'k" OR "1"="1'])
def test_a_key_that_reads_as_sql_is_only_ever_a_key(alice_client, key):
    first = place(alice_client, key=key)
    repeat = place(alice_client, key=key)
    other = place(alice_client, key="plain")

    assert first.status_code == repeat.status_code == other.status_code == 201
    assert first.json()["id"] == repeat.json()["id"] != other.json()["id"]
    assert Order.objects.count() == 2


@pytest.mark.parametrize("key", ["x" * 256, "bad\nkey", "", "ключ"])
def test_malformed_key_is_400(alice_client, key):
    response = alice_client.post("/api/accounts/primary/orders", {}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["errors"]


def test_cancel_and_modify_replay(alice_client):
    order_id = place(alice_client, order_type="LIMIT", price="1400.00").json()["id"]
    url = f"/api/accounts/primary/orders/{order_id}"

    modified = [
        alice_client.patch(url, {"price": "1300.00"}, format="json", HTTP_IDEMPOTENCY_KEY="m") for _ in range(2)
    ]
    assert [r.status_code for r in modified] == [200, 200]
    reused = alice_client.patch(url, {"price": "1200.00"}, format="json", HTTP_IDEMPOTENCY_KEY="m")
    assert reused.status_code == 422
    cancelled = [alice_client.delete(url, HTTP_IDEMPOTENCY_KEY="c") for _ in range(2)]
    assert [r.status_code for r in cancelled] == [200, 200]
    assert cancelled[1].json()["status"] == "CANCELLED"
    assert alice_client.delete(url, HTTP_IDEMPOTENCY_KEY="c2").status_code == 409


def test_place_key_cannot_be_reused_for_a_cancel(alice_client):
    order_id = place(alice_client, key="k", order_type="LIMIT", price="1400.00").json()["id"]
    response = alice_client.delete(f"/api/accounts/primary/orders/{order_id}", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 422


@pytest.mark.django_db(transaction=True)
def test_same_key_concurrently_places_one_order():
    user = UserFactory(tenant=TenantFactory(slug="race", currency="INR"))
    token = token_pair_for(user)["access"]
    results = []

    def worker():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        try:
            response = place(client, key="race-key", quantity=1)
            results.append((response.status_code, response.json()["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 6
    assert {status for status, _ in results} == {201}
    assert len({order_id for _, order_id in results}) == 1
    assert Order.objects.filter(account=TradingAccount.objects.get(user=user)).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_modifies_with_one_key_apply_once():
    """Issue 8, finding 5: 20 identical PATCHes with one key made the change 4 times."""
    user = UserFactory(tenant=TenantFactory(slug="modify-race", currency="INR"))
    token = token_pair_for(user)["access"]
    owner = APIClient()
    owner.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    order_id = place(owner, order_type="LIMIT", price="1400.00").json()["id"]
    answers = []

    def worker():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        try:
            response = client.patch(
                f"/api/accounts/primary/orders/{order_id}",
                {"price": "1410.00"},
                format="json",
                HTTP_IDEMPOTENCY_KEY="modify-once",
            )
            answers.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [200] * 20
    order = Order.objects.get(pk=order_id)
    assert order.price == Decimal("1410.00")
    assert order.events.filter(kind="modified").count() == 1
