"""Algo tags (SEBI's retail algo framework): each order carries one of the tenant's exchange-registered algo
ids, sent as Kite's own `algo_id` field, so Kite's one 20-character `tag` stays Thor's client order id (the
key that finds a lost placement again). Over real HTTP with the broker sandbox for the live orders."""

import pytest
from django.core.exceptions import ValidationError

from accounts.models import Order
from accounts.tests.conftest import order_body, place
from brokers.tests.sandbox_fixtures import link, sandbox_calls
from market.tests.fixtures import NIFTY_FUTURE, NIFTY_SLICE

pytestmark = pytest.mark.django_db

PLACE = "POST /orders/regular"
IDS = ["41230", "STRAT-2_b"]


@pytest.fixture
def registered(tenant):
    tenant.algo_ids = list(IDS)
    tenant.save(update_fields=["algo_ids"])
    return tenant


@pytest.fixture
def live(sandbox, alice_client, instrument_master, registered):
    return link(alice_client)


def kite_book(sandbox) -> list[dict]:
    return [order.current for order in sandbox.state.kite.accounts["AB1234"].orders.values()]


@pytest.mark.e2e
class TestLive:
    def test_the_tenants_first_id_goes_in_kites_algo_id_and_the_tag_stays_thors(self, alice_client, sandbox, live):
        response = place(alice_client, account=live.pk, quantity=1)

        assert response.status_code == 201, response.json()
        assert response.json()["algo_id"] == "41230"
        order = Order.objects.get(pk=response.json()["id"])
        assert order.algo_id == "41230"
        (sent,) = kite_book(sandbox)
        assert (sent["algo_id"], sent["tag"]) == ("41230", order.client_order_id)

    def test_an_order_may_name_another_of_the_tenants_ids(self, alice_client, sandbox, live):
        response = place(alice_client, account=live.pk, quantity=1, algo_id="STRAT-2_b")

        assert response.status_code == 201 and response.json()["algo_id"] == "STRAT-2_b"
        assert kite_book(sandbox)[0]["algo_id"] == "STRAT-2_b"

    def test_every_slice_of_a_sliced_order_carries_it(self, alice_client, sandbox, live):
        body = dict(tradingsymbol=NIFTY_FUTURE, exchange="NFO", product="NRML", transaction_type="SELL")
        response = place(alice_client, account=live.pk, quantity=2 * NIFTY_SLICE, algo_id="STRAT-2_b", **body)

        assert response.status_code == 201, response.json()
        assert [order["algo_id"] for order in kite_book(sandbox)] == ["STRAT-2_b"] * 2
        assert set(Order.objects.values_list("algo_id", flat=True)) == {"STRAT-2_b"}

    @pytest.mark.parametrize(
        ("algo_id", "says"),
        [
            ("41 230", "1 to 20 letters, digits, - or _"),
            ("41230\n", "1 to 20 letters, digits, - or _"),
            ("ünïcode", "1 to 20 letters, digits, - or _"),
            ("x" * 21, "1 to 20 letters, digits, - or _"),
            ("", "1 to 20 letters, digits, - or _"),
            ("99999", "'99999' is not one of this tenant's algo ids: use one of 41230, STRAT-2_b."),
        ],
    )
    def test_a_bad_or_foreign_id_is_a_400_before_anything_is_written_or_sent(
        self, alice_client, sandbox, live, algo_id, says
    ):
        response = place(alice_client, account=live.pk, quantity=1, algo_id=algo_id)

        assert response.status_code == 400
        assert says in response.json()["errors"]["algo_id"][0]
        assert not Order.objects.exists() and sandbox_calls(sandbox, PLACE) == 0


def test_a_tenant_without_ids_sends_none_and_refuses_an_order_naming_one(alice_client, instrument_master):
    assert place(alice_client, quantity=1).json()["algo_id"] == ""

    response = place(alice_client, quantity=1, algo_id="41230")

    assert response.status_code == 400
    assert "it has none" in response.json()["errors"]["algo_id"][0]


def test_a_paper_order_carries_the_tenants_id_too(alice_client, registered):
    response = place(alice_client, quantity=1)

    assert response.status_code == 201 and response.json()["algo_id"] == "41230"


def test_a_batch_leg_naming_a_foreign_id_refuses_the_batch(alice_client, registered):
    legs = [order_body(quantity=1), order_body(quantity=1, algo_id="nope")]

    response = alice_client.post("/api/accounts/primary/batch-orders", {"orders": legs}, format="json")

    assert response.status_code == 400 and "algo_id" in response.json()["errors"]
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    "ids", [["41 230"], ["a" * 21], [""], [41230], ["41230", "41230"], "41230", [f"id{n}" for n in range(51)]]
)
def test_the_tenants_ids_are_checked_where_an_operator_sets_them(tenant, ids):
    tenant.algo_ids = ids

    with pytest.raises(ValidationError) as refused:
        tenant.full_clean()

    assert "algo_ids" in refused.value.message_dict
