"""Operators see the numbers the API shows: the money policy holds in the admin too."""

import pytest
from django.test import Client

from accounts.models import TradingAccount
from accounts.tests.conftest import place
from identity.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops_client(tenant):
    ops = User.objects.create_superuser("ops@thor.test", "ops-password-123", tenant=tenant)
    client = Client()
    client.force_login(ops)
    return client


def test_orders_accounts_and_positions_render_by_the_money_policy(ops_client, alice_client, alice):
    assert place(alice_client, quantity=7).status_code == 201
    account = TradingAccount.objects.get(user=alice, is_primary=True)

    orders = ops_client.get("/admin/accounts/order/")
    accounts = ops_client.get("/admin/accounts/tradingaccount/")
    detail = ops_client.get(f"/admin/accounts/tradingaccount/{account.pk}/change/")

    assert orders.status_code == accounts.status_code == detail.status_code == 200
    assert '<td class="field-whole_quantity">7</td>' in orders.text
    assert "89500.00" in accounts.text
    assert "1500.0000" in detail.text and "7.0000" not in detail.text
