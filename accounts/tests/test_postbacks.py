"""Kite order postbacks: verified by brokers, applied by accounts through the one broker-update path,
signed by the order's app, applied once, never a 500."""

import json
from decimal import Decimal

import pytest

from accounts.broker_updates import order_broker_update
from accounts.models import Order, OrderEvent
from brokers.adapters.kite import postback_checksum
from brokers.adapters.types import OrderResult
from brokers.tests.factories import KITE_SECRET, BrokerAppFactory, linked_kite_account
from brokers.tests.kite_fixtures import kite_fixture

pytestmark = pytest.mark.django_db

URL = "/api/brokers/kite/postback/"


def signed(secret=KITE_SECRET, **changes) -> dict:
    payload = {**kite_fixture("postback.json"), **changes}
    payload["checksum"] = postback_checksum(
        order_id=payload["order_id"], order_timestamp=payload["order_timestamp"], api_secret=secret
    )
    return payload


@pytest.fixture
def account(alice):
    return linked_kite_account(alice, broker_user_id="AB1234")


def sbin_order(account, **fields) -> Order:
    """The fixture postback's order as Thor stores it."""
    return Order.objects.create(
        account=account,
        symbol="SBIN",
        exchange="NSE",
        side="BUY",
        quantity=Decimal("1"),
        order_type="MARKET",
        product="CNC",
        **fields,
    )


@pytest.fixture
def order(account):
    return sbin_order(account, client_order_id="thor-1", broker_order_id="220303000308932", status="OPEN")


def post(client, payload):
    return client.post(URL, payload, format="json")


def test_a_signed_update_is_stored_with_an_audit_row(anon_client, order):
    response = post(anon_client, signed())

    assert response.status_code == 200 and response.json()["applied"] is True
    order.refresh_from_db()
    assert (order.status, order.filled_quantity, order.average_price) == ("COMPLETE", Decimal("1"), Decimal("470"))
    assert "checksum" not in order.raw and order.raw["order_id"] == "220303000308932"
    event = OrderEvent.objects.get(order=order)
    assert event.kind == "broker_postback"
    assert event.before["status"] == "OPEN" and event.after["status"] == "COMPLETE"


def test_a_duplicate_is_ignored(anon_client, order):
    post(anon_client, signed())

    response = post(anon_client, signed())

    assert response.status_code == 200 and response.json()["applied"] is False
    assert OrderEvent.objects.filter(order=order).count() == 1


def test_a_late_working_update_does_not_reopen_a_finished_order(anon_client, order):
    post(anon_client, signed())

    response = post(anon_client, signed(status="OPEN", filled_quantity=0))

    assert response.json()["applied"] is False
    order.refresh_from_db()
    assert order.status == "COMPLETE"


def test_an_older_partial_fill_arriving_late_does_not_shrink_the_fill(anon_client, order):
    post(anon_client, signed(status="OPEN", filled_quantity=6, average_price=470))

    response = post(anon_client, signed(status="OPEN", filled_quantity=2, average_price=470))

    assert response.json()["applied"] is False
    order.refresh_from_db()
    assert order.filled_quantity == Decimal("6")


def test_a_finished_order_is_never_refinished_as_something_else(anon_client, order):
    post(anon_client, signed())

    response = post(anon_client, signed(status="CANCELLED", filled_quantity=0))

    assert response.json()["applied"] is False
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("COMPLETE", Decimal("1"))


def test_a_postback_without_an_average_price_is_fine(anon_client, account):
    payload = signed(order_id="999000111")
    del payload["average_price"]

    response = post(anon_client, payload)

    assert response.status_code == 200
    assert Order.objects.get(broker_order_id="999000111").average_price is None


@pytest.mark.parametrize(
    "changes",
    [
        {"quantity": "abc"},
        {"price": {}},
        {"quantity": "1e30"},
        {"filled_quantity": "-1"},
        {"tradingsymbol": "X" * 500},
        {"status": ["COMPLETE"]},
    ],
)
def test_a_signed_but_absurd_new_order_is_a_400_not_a_500(anon_client, account, changes):
    response = post(anon_client, signed(order_id="999000111", **changes))

    assert response.status_code == 400
    assert response.json()["status_code"] == 400
    assert not Order.objects.filter(broker_order_id="999000111").exists()


def test_a_partial_fill_then_completion_are_both_recorded(anon_client, order):
    post(anon_client, signed(status="UPDATE", filled_quantity=0.5, average_price=469.95))
    post(anon_client, signed())

    order.refresh_from_db()
    assert order.status == "COMPLETE"
    assert [(e.after["status"], e.after["filled_quantity"]) for e in OrderEvent.objects.filter(order=order)] == [
        ("OPEN", "0.5"),
        ("COMPLETE", "1"),
    ]


def test_an_order_thor_has_not_seen_is_created_on_the_users_live_account(anon_client, account):
    response = post(anon_client, signed(order_id="999000111", tag="external"))

    assert response.status_code == 200
    created = Order.objects.get(broker_order_id="999000111")
    assert created.account == account and created.symbol == "SBIN" and created.status == "COMPLETE"
    assert OrderEvent.objects.filter(order=created).count() == 1


def test_form_encoded_postbacks_work_too(anon_client, order):
    payload = {key: value for key, value in signed().items() if value is not None and not isinstance(value, dict)}

    response = anon_client.post(URL, payload)

    assert response.status_code == 200 and response.json()["applied"] is True


def test_a_wrong_checksum_is_a_400_and_changes_nothing(anon_client, order):
    response = post(anon_client, signed(secret="not-the-secret"))

    assert response.status_code == 400 and response.json()["code"] == "checksum_invalid"
    order.refresh_from_db()
    assert order.status == "OPEN" and not OrderEvent.objects.exists()


def test_another_apps_secret_cannot_update_this_order(anon_client, order, charlie):
    """Charlie links the same Kite user through another tenant's app: that app's postback speaks only for
    Charlie's account, where it records the order as Charlie's Kite account shows it."""
    other_app = BrokerAppFactory(tenant=charlie.tenant, api_secret="globexsecret99")
    charlies = linked_kite_account(charlie, app=other_app, broker_user_id="AB1234")

    response = post(anon_client, signed(secret="globexsecret99"))

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == "OPEN" and order.events.filter(kind="broker_postback").count() == 0
    assert charlies.orders.get().broker_order_id == order.broker_order_id


def test_an_unknown_order_for_an_unknown_user_is_refused(anon_client, account):
    response = post(anon_client, signed(user_id="ZZ9999", order_id="5"))

    assert response.status_code == 400
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1, 2, 3]",
        "null",
        json.dumps({"order_id": "1"}),
        json.dumps({**kite_fixture("postback.json"), "checksum": "zz"}),
        json.dumps({**kite_fixture("postback.json"), "filled_quantity": "NaN"}),
        json.dumps({**kite_fixture("postback.json"), "filled_quantity": 1e40}),
        json.dumps({**kite_fixture("postback.json"), "order_id": "../../x"}),
    ],
)
def test_garbage_is_a_400_never_a_500(anon_client, order, body):
    response = anon_client.post(URL, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["status_code"] == 400


class TestAPostbackThatBeatsThePlacementAnswer:
    """Kite often posts a fill back before it answers the placement that caused it."""

    @pytest.fixture
    def pending(self, account):
        return sbin_order(account, client_order_id="thor0123456789abcdef", status="PENDING")

    def test_finds_thors_order_by_its_tag_and_gives_it_the_broker_id(self, anon_client, pending):
        response = post(anon_client, signed(tag="thor0123456789abcdef"))

        assert response.json()["applied"] is True
        pending.refresh_from_db()
        assert (pending.broker_order_id, pending.status) == ("220303000308932", "COMPLETE")
        assert Order.objects.count() == 1

    def test_the_late_placement_answer_does_not_undo_the_fill(self, anon_client, pending):
        post(anon_client, signed(tag="thor0123456789abcdef"))

        order_broker_update(
            account=pending.account,
            result=OrderResult(broker_order_id="220303000308932", status="OPEN"),
            kind="sent",
            order=pending,
        )

        pending.refresh_from_db()
        assert pending.status == "COMPLETE"

    def test_a_stand_in_made_by_an_untagged_postback_is_merged_into_thors_order_and_kept(self, anon_client, pending):
        post(anon_client, signed(tag=""))
        stand_in = Order.objects.exclude(pk=pending.pk).get()

        order_broker_update(
            account=pending.account,
            result=OrderResult(broker_order_id="220303000308932", status="OPEN"),
            kind="sent",
            order=pending,
        )

        pending.refresh_from_db()
        stand_in.refresh_from_db()
        assert (pending.broker_order_id, pending.status) == ("220303000308932", "COMPLETE")
        assert (stand_in.status, stand_in.merged_into_id, stand_in.broker_order_id) == ("MERGED", pending.pk, "")
        assert set(OrderEvent.objects.filter(order=pending).values_list("kind", flat=True)) == {
            "broker_postback",
            "sent",
        }
