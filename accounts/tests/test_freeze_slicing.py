"""An order above the exchange's freeze quantity is placed as slices (accounts.slicing): one parent order,
the one the API answers and lists, with its children, each at most the freeze quantity in whole lots and at
most ten of them; the parent shows their aggregate. Paper accounts; NIFTY future: lot 65, freeze 1800, so a
slice carries at most 27 lots (NIFTY_SLICE, 1,755)."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from accounts import streams
from accounts.market_data import Instrument
from accounts.models import Order, OrderDeletionRefused, OrderEvent, TradingAccount
from accounts.paper import paper_orders_match
from accounts.slicing import MAX_SLICES, freeze_slices
from accounts.tests.conftest import place
from market.tests.fixtures import NIFTY_FREEZE, NIFTY_FUTURE, NIFTY_LOT, NIFTY_SLICE

pytestmark = pytest.mark.django_db

NIFTY = Instrument(
    exchange="NFO", symbol=NIFTY_FUTURE, tick_size=Decimal("0.05"), lot_size=NIFTY_LOT, freeze_quantity=NIFTY_FREEZE
)


@pytest.fixture
def rich_alice(alice, instrument_master):
    account = TradingAccount.objects.get(user=alice, is_primary=True)
    account.cash = Decimal("100000000")
    account.save()
    return account


def place_nifty(client, quantity, **overrides):
    return place(client, tradingsymbol=NIFTY_FUTURE, exchange="NFO", product="NRML", quantity=quantity, **overrides)


def children_of(data: dict) -> list[tuple[int, str, int]]:
    return [(child["quantity"], child["status"], child["filled_quantity"]) for child in data["children"]]


def test_twice_the_freeze_quantity_is_two_slices_and_one_complete_order(alice_client, rich_alice):
    response = place_nifty(alice_client, 2 * NIFTY_SLICE)

    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["quantity"], data["status"], data["filled_quantity"], data["average_price"]) == (
        2 * NIFTY_SLICE,
        "COMPLETE",
        2 * NIFTY_SLICE,
        "24000.0000",
    )
    assert children_of(data) == [(NIFTY_SLICE, "COMPLETE", NIFTY_SLICE), (NIFTY_SLICE, "COMPLETE", NIFTY_SLICE)]
    parent = Order.objects.get(pk=data["id"])
    assert [child.parent_id for child in Order.objects.exclude(pk=parent.pk)] == [parent.pk, parent.pk]
    # Filled once, as slices: the position is the whole, not twice it.
    assert rich_alice.paper_positions.get().quantity == 2 * NIFTY_SLICE
    rich_alice.refresh_from_db()
    assert rich_alice.cash == Decimal("100000000") - 2 * NIFTY_SLICE * Decimal("24000")


def test_one_lot_more_is_two_slices_the_last_the_rest(alice_client, rich_alice):
    response = place_nifty(alice_client, NIFTY_SLICE + NIFTY_LOT)

    assert response.status_code == 201, response.json()
    assert children_of(response.json()) == [(NIFTY_SLICE, "COMPLETE", NIFTY_SLICE), (NIFTY_LOT, "COMPLETE", NIFTY_LOT)]


def test_the_most_whole_lots_within_the_freeze_is_one_order_without_children(alice_client, rich_alice):
    response = place_nifty(alice_client, NIFTY_SLICE)

    assert response.status_code == 201 and response.json()["children"] == []
    assert Order.objects.count() == 1


def test_eleven_slices_worth_is_refused_naming_the_limit_and_nothing_is_written(alice_client, rich_alice):
    response = place_nifty(alice_client, 10 * NIFTY_SLICE + NIFTY_LOT)

    assert response.status_code == 400
    message = response.json()["errors"]["quantity"][0]
    assert f"Above {MAX_SLICES} slices" in message and str(NIFTY_FREEZE) in message
    assert not Order.objects.exists()


def test_ten_slices_worth_is_placed(alice_client, rich_alice):
    TradingAccount.objects.filter(pk=rich_alice.pk).update(cash=Decimal("500000000"))
    response = place_nifty(alice_client, 10 * NIFTY_SLICE, order_type="LIMIT", price="23000.00")

    assert response.status_code == 201, response.json()
    assert len(response.json()["children"]) == 10


def test_buying_power_is_checked_on_the_whole_order(alice_client, rich_alice):
    rich_alice.cash = NIFTY_SLICE * Decimal("24000") + 1  # one slice's worth, not two
    rich_alice.save()

    response = place_nifty(alice_client, 2 * NIFTY_SLICE)

    assert response.status_code == 400
    assert "Insufficient buying power" in response.json()["errors"]["quantity"][0]
    assert not Order.objects.exists()


def test_resting_slices_reserve_once_and_a_rejected_slice_shows_in_the_parent(alice_client, rich_alice, fixed_prices):
    response = place_nifty(alice_client, 2 * NIFTY_SLICE, order_type="LIMIT", price="23000.00")
    data = response.json()
    assert data["status"] == "OPEN" and children_of(data) == [(NIFTY_SLICE, "OPEN", 0), (NIFTY_SLICE, "OPEN", 0)]
    # Only the children reserve cash: the resting parent does not reserve its quantity a second time.
    funds = alice_client.get("/api/accounts/primary/funds").json()["data"]
    assert Decimal(funds["buying_power"]) == Decimal("100000000") - 2 * NIFTY_SLICE * Decimal("23000")

    # Cash for one slice only when the price comes: the first slice is refused at its fill, the second fills.
    TradingAccount.objects.filter(pk=rich_alice.pk).update(cash=NIFTY_SLICE * Decimal("23000") + 100)
    fixed_prices[f"NFO:{NIFTY_FUTURE}"] = "22900.00"
    paper_orders_match(account_id=rich_alice.pk)

    data = alice_client.get(f"/api/accounts/primary/orders/{data['id']}").json()
    assert children_of(data) == [(NIFTY_SLICE, "REJECTED", 0), (NIFTY_SLICE, "COMPLETE", NIFTY_SLICE)]
    assert (data["status"], data["filled_quantity"], data["average_price"]) == ("CANCELLED", NIFTY_SLICE, "22900.0000")
    assert data["status_message"].startswith("slice 1 REJECTED: Insufficient funds at fill")
    assert OrderEvent.objects.filter(order_id=data["id"], kind="slices_updated").exists()


def test_the_sockets_last_update_of_the_parent_carries_its_slices(alice_client, rich_alice, monkeypatch):
    published, stream_message = [], streams.stream_message

    def stream_message_kept(kind, **fields):
        if kind == streams.ORDER_UPDATE:
            published.append(fields["data"])
        return stream_message(kind, **fields)

    monkeypatch.setattr(streams, "stream_message", stream_message_kept)
    order_id = place_nifty(alice_client, 2 * NIFTY_SLICE).json()["id"]

    parent_updates = [data for data in published if data["id"] == order_id]
    # Never COMPLETE over the first slice alone: OPEN while the second is still to fill.
    assert [data["status"] for data in parent_updates] == ["PENDING", "OPEN", "COMPLETE"]
    assert children_of(parent_updates[-1]) == [
        (NIFTY_SLICE, "COMPLETE", NIFTY_SLICE),
        (NIFTY_SLICE, "COMPLETE", NIFTY_SLICE),
    ]


def test_cancelling_the_parent_cancels_its_open_slices(alice_client, rich_alice):
    order_id = place_nifty(alice_client, 2 * NIFTY_SLICE, order_type="LIMIT", price="23000.00").json()["id"]

    response = alice_client.delete(f"/api/accounts/primary/orders/{order_id}")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "CANCELLED"
    assert children_of(response.json()) == [(NIFTY_SLICE, "CANCELLED", 0), (NIFTY_SLICE, "CANCELLED", 0)]


def test_a_resting_sliced_order_counts_once_against_the_tenants_open_orders(alice_client, rich_alice, tenant):
    tenant.max_open_orders = 2
    tenant.save()
    place_nifty(alice_client, 2 * NIFTY_SLICE, order_type="LIMIT", price="23000.00")

    second = place_nifty(alice_client, NIFTY_LOT, order_type="LIMIT", price="23000.00")
    third = place_nifty(alice_client, NIFTY_LOT, order_type="LIMIT", price="23000.00")

    assert (second.status_code, third.status_code) == (201, 400)
    assert "At most 2 open orders" in third.json()["errors"]["non_field_errors"][0]


def test_a_sliced_order_is_not_modified(alice_client, rich_alice):
    data = place_nifty(alice_client, 2 * NIFTY_SLICE, order_type="LIMIT", price="23000.00").json()

    for order_id in (data["id"], data["children"][0]["id"]):
        response = alice_client.patch(f"/api/accounts/primary/orders/{order_id}", {"price": "23100.00"}, format="json")
        assert response.status_code == 409 and response.json()["code"] == "order_sliced"


def test_the_order_list_shows_the_parent_once_with_its_children(alice_client, rich_alice):
    order_id = place_nifty(alice_client, 2 * NIFTY_SLICE).json()["id"]

    results = alice_client.get("/api/accounts/primary/orders/").json()["results"]

    assert [order["id"] for order in results] == [order_id]
    assert len(results[0]["children"]) == 2


def test_the_same_idempotency_key_answers_the_parent_with_its_children(alice_client, rich_alice):
    first = place_nifty(alice_client, 2 * NIFTY_SLICE, key="slices-1")
    again = place_nifty(alice_client, 2 * NIFTY_SLICE, key="slices-1")

    assert again.json()["id"] == first.json()["id"] and again.json()["children"] == first.json()["children"]
    assert Order.objects.count() == 3


def test_a_slice_row_is_never_deleted(alice_client, rich_alice):
    place_nifty(alice_client, 2 * NIFTY_SLICE)
    child = Order.objects.filter(parent__isnull=False).first()

    with pytest.raises(OrderDeletionRefused):
        child.delete()
    with pytest.raises(OrderDeletionRefused):
        Order.objects.filter(parent__isnull=False).delete()
    assert Order.objects.count() == 3


@given(lots=st.integers(min_value=1, max_value=MAX_SLICES * NIFTY_SLICE // NIFTY_LOT))
def test_slices_sum_to_the_order_each_within_the_freeze_and_at_most_ten(lots):
    quantity = Decimal(lots * NIFTY_LOT)

    slices = freeze_slices(instrument=NIFTY, quantity=quantity)

    assert sum(slices) == quantity
    assert all(0 < size <= NIFTY_FREEZE and size % NIFTY_LOT == 0 for size in slices)
    assert len(slices) <= MAX_SLICES


@given(extra_lots=st.integers(min_value=1, max_value=1000))
def test_more_than_ten_slices_worth_is_always_refused(extra_lots):
    with pytest.raises(ValidationError):
        freeze_slices(instrument=NIFTY, quantity=Decimal(MAX_SLICES * NIFTY_SLICE + extra_lots * NIFTY_LOT))


def test_a_freeze_quantity_that_is_not_whole_lots_slices_in_whole_lots():
    odd = Instrument(exchange="NFO", symbol="X", tick_size=Decimal("0.05"), lot_size=35, freeze_quantity=900)

    assert freeze_slices(instrument=odd, quantity=Decimal(35 * 30)) == [Decimal(875), Decimal(175)]
