import pytest

from accounts.models import Order, TradingAccount
from accounts.tests.conftest import order_body, place
from brokers.models import BrokerApp, BrokerConnection

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/api/accounts/{id}", None),
    ("patch", "/api/accounts/{id}", {"primary": True}),
    ("post", "/api/accounts/{id}/sync", None),
    ("post", "/api/accounts/{id}/reset", None),
    ("get", "/api/accounts/{id}/positions", None),
    ("get", "/api/accounts/{id}/holdings", None),
    ("get", "/api/accounts/{id}/funds", None),
    ("get", "/api/accounts/{id}/orders", None),
    ("post", "/api/accounts/{id}/orders", order_body()),
    ("get", "/api/accounts/{id}/orders/{order}", None),
    ("patch", "/api/accounts/{id}/orders/{order}", {"price": "1400.00"}),
    ("delete", "/api/accounts/{id}/orders/{order}", None),
    ("post", "/api/accounts/{id}/batch-orders", {"orders": [order_body()]}),
]


@pytest.fixture
def alice_order(alice_client, alice):
    order_id = place(alice_client, order_type="LIMIT", price="1400.00").json()["id"]
    return TradingAccount.objects.get(user=alice, is_primary=True), order_id


def call(client, method, path, body):
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


@pytest.mark.parametrize("method, path, body", ENDPOINTS)
@pytest.mark.parametrize("intruder", ["bob_client", "charlie_client"])
def test_another_users_account_is_not_found(request, alice_order, method, path, body, intruder):
    account, order_id = alice_order
    client = request.getfixturevalue(intruder)

    response = call(client, method, path.format(id=account.pk, order=order_id), body)

    assert response.status_code == 404, response.json()
    assert response.json()["code"] == "not_found"
    assert Order.objects.get(pk=order_id).status == "OPEN"
    assert Order.objects.count() == 1


@pytest.mark.parametrize("method, path, body", [*ENDPOINTS, ("get", "/api/accounts", None)])
def test_unauthenticated_is_401(anon_client, alice_order, method, path, body):
    account, order_id = alice_order

    response = call(anon_client, method, path.format(id=account.pk, order=order_id), body)

    assert response.status_code == 401
    assert response.json()["status_code"] == 401


@pytest.mark.parametrize("ref", ["primary-ish", "-1", "0", "99999999"])
def test_unknown_account_refs(alice_client, ref):
    assert alice_client.get(f"/api/accounts/{ref}/positions").status_code == 404


# Superscript two, Arabic-Indic three, fullwidth one (Unicode digits), past a bigint, signed, padded.
MALFORMED_IDS = ["%C2%B2", "%D9%A3", "%EF%BC%91", "9" * 19, "-1", "+1", "%201", "1%20", "1%0A"]


@pytest.mark.parametrize("ref", MALFORMED_IDS)
@pytest.mark.parametrize("method, path, body", ENDPOINTS)
def test_an_account_id_that_is_not_plain_ascii_digits_is_not_found(alice_client, alice_order, method, path, body, ref):
    _, order_id = alice_order

    response = call(alice_client, method, path.format(id=ref, order=order_id), body)

    assert response.status_code == 404, response.content
    assert response.json()["code"] == "not_found"
    assert Order.objects.get(pk=order_id).status == "OPEN"


def test_own_order_under_another_own_account_is_not_found(alice_client, alice, alice_order):
    _, order_id = alice_order
    other = TradingAccount.objects.create(user=alice, mode="paper", display_name="Second")
    assert alice_client.get(f"/api/accounts/{other.pk}/orders/{order_id}").status_code == 404


@pytest.fixture
def live_account(alice, tenant):
    app = BrokerApp.objects.create(kind="kite", api_key="k", api_secret="s", tenant=tenant)
    connection = BrokerConnection.objects.create(user=alice, app=app, status="active", broker_user_id="AB1234")
    return TradingAccount.objects.create(
        user=alice,
        mode="live",
        connection=connection,
        broker_account_id="AB1234",
        display_name="Zerodha",
        currency="INR",
    )


class TestAccounts:
    def test_list_shows_paper_and_live(self, alice_client, live_account):
        body = alice_client.get("/api/accounts").json()

        assert [(a["mode"], a["broker"], a["status"], a["primary"]) for a in body] == [
            ("paper", "paper", "active", True),
            ("live", "kite", "active", False),
        ]
        assert body[0]["currency"] == "INR"  # acme trades Indian instruments

    def test_switch_primary_to_live_and_back(self, alice_client, alice, live_account):
        response = alice_client.patch(f"/api/accounts/{live_account.pk}/", {"primary": True}, format="json")
        assert response.status_code == 200 and response.json()["primary"] is True
        assert alice_client.get("/api/accounts/primary").json()["id"] == live_account.pk

        paper = TradingAccount.objects.get(user=alice, mode="paper")
        alice_client.patch(f"/api/accounts/{paper.pk}", {"primary": True}, format="json")
        assert alice_client.get("/api/accounts/primary").json()["mode"] == "paper"

    def test_expired_live_account_cannot_become_primary(self, alice_client, live_account):
        live_account.connection.status = "expired"
        live_account.connection.save()
        response = alice_client.patch(f"/api/accounts/{live_account.pk}", {"primary": True}, format="json")
        assert response.status_code == 409 and response.json()["code"] == "reauth_required"

    def test_primary_false_or_garbage_is_400(self, alice_client):
        assert alice_client.patch("/api/accounts/primary", {"primary": False}, format="json").status_code == 400
        assert alice_client.patch("/api/accounts/primary", {"primary": "maybe"}, format="json").status_code == 400

    def test_live_account_orders_need_trading_enabled(self, alice_client, live_account):
        response = place(alice_client, account=live_account.pk)
        assert response.status_code == 403 and response.json()["code"] == "trading_disabled"

    def test_live_account_cannot_be_reset(self, alice_client, live_account):
        response = alice_client.post(f"/api/accounts/{live_account.pk}/reset")
        assert response.status_code == 409
