"""A live Kite order above the exchange's freeze quantity goes out as ONE autoslice call (accounts.autoslice):
Kite slices it, Thor keeps the parent and a child per slice with its broker id, status and fills.

Over real HTTP with the broker sandbox, which slices as Kite does (NIFTY future: lot 65, freeze 1800: slices of
fails chosen slices on demand (a `slice_reject` fault). Sells at the market: the sandbox fills them at once
and holds no margin against them.
"""

import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiteconnect import KiteConnect

from accounts.autoslice import slices_apply
from accounts.broker_updates import order_broker_update
from accounts.market_data import Instrument
from accounts.models import BrokerOrderId, Order
from accounts.placement import orders_needing_review
from accounts.services import unknown_orders_settle
from accounts.slicing import MAX_SLICES, freeze_slices
from accounts.tests.conftest import place
from brokers.adapters.kite import postback_checksum
from brokers.adapters.types import OrderResult, SlicedPlacement, SliceOutcome
from brokers.sandbox.kite_autoslice import freeze_size, slice_sizes
from brokers.sandbox.kite_models import KiteError
from brokers.sandbox.market import Instrument as SandboxInstrument
from brokers.tests.factories import linked_kite_account
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, CALLBACK, link, sandbox_calls, sandbox_fault
from market.tests.fixtures import NIFTY_FUTURE, NIFTY_LOT, NIFTY_SLICE

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

PLACE = "POST /orders/regular"


@pytest.fixture
def live(sandbox, alice_client, instrument_master):
    return link(alice_client)


def sell_nifty(client, account, quantity, key=None, **overrides):
    body = dict(tradingsymbol=NIFTY_FUTURE, exchange="NFO", product="NRML", transaction_type="SELL")
    return place(client, account=account.pk, key=key, quantity=quantity, **{**body, **overrides})


def sandbox_book(sandbox) -> dict[str, dict]:
    return {order_id: order.current for order_id, order in sandbox.state.kite.accounts["AB1234"].orders.items()}


def slices(data: dict) -> list[tuple[int, str]]:
    return [(child["quantity"], child["status"]) for child in data["children"]]


def sync(client, account) -> dict:
    assert client.post(f"/api/accounts/{account.pk}/sync").status_code == 200
    return client.get(f"/api/accounts/{account.pk}/orders/{Order.objects.get(parent=None, account=account).pk}").json()


def wait_until(condition, seconds=10):
    """Until the sandbox, in its own thread, has done what it was doing (a bounded wait, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the sandbox never got there"
        time.sleep(0.05)


class TestSliced:
    def test_one_call_places_every_slice_and_the_parent_shows_their_aggregate(self, alice_client, sandbox, live):
        response = sell_nifty(alice_client, live, 2 * NIFTY_SLICE + NIFTY_LOT)

        assert response.status_code == 201, response.json()
        data = response.json()
        assert slices(data) == [(NIFTY_SLICE, "OPEN"), (NIFTY_SLICE, "OPEN"), (NIFTY_LOT, "OPEN")]
        assert sandbox_calls(sandbox, PLACE) == 1
        parent = Order.objects.get(pk=data["id"])
        children = list(parent.children.order_by("id"))
        book = sandbox_book(sandbox)
        # Each child holds its own broker order, claimed like any broker id; Kite tagged each with the parent's id.
        assert {child.broker_order_id for child in children} == set(book)
        assert all(book[child.broker_order_id]["quantity"] == child.quantity for child in children)
        assert {order["tag"] for order in book.values()} == {parent.client_order_id}
        assert parent.broker_order_id and parent.broker_order_id not in book
        assert BrokerOrderId.objects.filter(account=live).count() == 4
        # Kite posts each slice's fill back by its own id: that child moves, and the parent's aggregate with it.
        assert post_back(alice_client, book[children[0].broker_order_id]).json()["applied"] is True
        shown = alice_client.get(f"/api/accounts/{live.pk}/orders/{parent.pk}").json()
        assert slices(shown) == [(NIFTY_SLICE, "COMPLETE"), (NIFTY_SLICE, "OPEN"), (NIFTY_LOT, "OPEN")]
        assert (shown["status"], shown["filled_quantity"]) == ("OPEN", NIFTY_SLICE)

        synced = sync(alice_client, live)

        assert slices(synced) == [(NIFTY_SLICE, "COMPLETE"), (NIFTY_SLICE, "COMPLETE"), (NIFTY_LOT, "COMPLETE")]
        assert (synced["status"], synced["filled_quantity"], synced["quantity"]) == (
            "COMPLETE",
            2 * NIFTY_SLICE + NIFTY_LOT,
            2 * NIFTY_SLICE + NIFTY_LOT,
        )
        assert [order["id"] for order in alice_client.get(f"/api/accounts/{live.pk}/orders/").json()["results"]] == [
            parent.pk
        ]

    def test_slices_kite_refused_are_rejected_with_its_message_and_the_parent_shows_what_filled(
        self, alice_client, sandbox, live
    ):
        sandbox_fault(sandbox, kind="slice_reject", slices=[2], message="RMS: Margin Exceeds", count=1)

        response = sell_nifty(alice_client, live, 3 * NIFTY_SLICE)

        assert response.status_code == 201, response.json()
        children = response.json()["children"]
        assert [(c["status"], c["status_message"], bool(c["broker_order_id"])) for c in children] == [
            ("OPEN", "", True),
            ("REJECTED", "RMS: Margin Exceeds", False),
            ("OPEN", "", True),
        ]
        assert len(sandbox_book(sandbox)) == 2
        synced = sync(alice_client, live)
        assert (synced["status"], synced["filled_quantity"]) == ("CANCELLED", 2 * NIFTY_SLICE)
        assert synced["status_message"] == "slice 2 REJECTED: RMS: Margin Exceeds"

    def test_every_slice_refused_is_a_rejected_order(self, alice_client, sandbox, live):
        sandbox_fault(sandbox, kind="slice_reject", slices=[1, 2], count=1)

        data = sell_nifty(alice_client, live, 2 * NIFTY_SLICE).json()

        assert data["status"] == "REJECTED" and slices(data) == [(NIFTY_SLICE, "REJECTED"), (NIFTY_SLICE, "REJECTED")]
        assert data["status_message"].startswith("RMS:")

    def test_more_than_ten_slices_is_a_400_before_anything_is_written_or_sent(self, alice_client, sandbox, live):
        response = sell_nifty(alice_client, live, MAX_SLICES * NIFTY_SLICE + NIFTY_LOT)

        assert response.status_code == 400
        assert f"Above {MAX_SLICES} slices" in response.json()["errors"]["quantity"][0]
        assert not Order.objects.filter(account=live).exists()
        assert sandbox_calls(sandbox, PLACE) == 0

    def test_ten_slices_are_one_call(self, alice_client, sandbox, live):
        response = sell_nifty(alice_client, live, MAX_SLICES * NIFTY_SLICE)

        assert response.status_code == 201 and len(response.json()["children"]) == MAX_SLICES
        assert sandbox_calls(sandbox, PLACE) == 1

    def test_the_same_key_again_sends_nothing_and_answers_the_same_order(self, alice_client, sandbox, live):
        first = sell_nifty(alice_client, live, 2 * NIFTY_SLICE, key="slices-1")
        again = sell_nifty(alice_client, live, 2 * NIFTY_SLICE, key="slices-1")

        assert first.status_code == 201 and again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert [c["id"] for c in again.json()["children"]] == [c["id"] for c in first.json()["children"]]
        assert sandbox_calls(sandbox, PLACE) == 1
        assert Order.objects.filter(account=live).count() == 3

    def test_a_refused_call_rejects_parent_and_slices_and_the_key_answers_that(self, alice_client, sandbox, live):
        # Kite refuses the whole call (here: not from the user's registered static IP): nothing is placed.
        app = {"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": CALLBACK, "ip_whitelist": ["127.0.0.2"]}
        requests.post(f"{sandbox.url}/_sandbox/apps", json=app, timeout=5).raise_for_status()

        refused = sell_nifty(alice_client, live, 2 * NIFTY_SLICE, key="refused-1")
        again = sell_nifty(alice_client, live, 2 * NIFTY_SLICE, key="refused-1")

        assert refused.status_code == 403 and again.json() == refused.json()
        parent = Order.objects.get(account=live, parent=None)
        assert parent.status == "REJECTED" and "static IPs" in parent.status_message
        assert [(child.status, child.status_message) for child in parent.children.order_by("id")] == [
            ("REJECTED", parent.status_message)
        ] * 2
        assert sandbox_calls(sandbox, PLACE) == 1 and not sandbox_book(sandbox)


class TestLostAnswer:
    @pytest.fixture(autouse=True)
    def quick_broker(self, settings):
        settings.THOR_KITE_TIMEOUT = 0.2
        settings.THOR_PLACEMENT_LOOKUP_INTERVAL = 0.2
        settings.THOR_PLACEMENT_LOOKUPS = 1

    def test_slices_are_found_in_the_book_by_the_parents_tag_never_sent_again(self, alice_client, sandbox, live):
        sandbox_fault(sandbox, kind="latency", ms=1500, path="/orders/regular", count=1)

        response = sell_nifty(alice_client, live, 2 * NIFTY_SLICE + NIFTY_LOT, key="lost-1")

        assert response.status_code == 202, response.json()
        assert response.json()["status"] == "UNKNOWN" and slices(response.json()) == [
            (NIFTY_SLICE, "UNKNOWN"),
            (NIFTY_SLICE, "UNKNOWN"),
            (NIFTY_LOT, "UNKNOWN"),
        ]
        wait_until(lambda: len(sandbox_book(sandbox)) == 3)
        parent = Order.objects.get(pk=response.json()["id"])
        # A slice's postback arrives before Thor reads the book: it lands on the slice of its quantity.
        small = next(order for order in sandbox_book(sandbox).values() if order["quantity"] == NIFTY_LOT)
        assert post_back(alice_client, small).status_code == 200
        child = parent.children.get(quantity=NIFTY_LOT)
        assert (child.broker_order_id, child.status) == (small["order_id"], "COMPLETE")
        parent.refresh_from_db()
        assert parent.status == "UNKNOWN" and parent.broker_order_id == ""

        unknown_orders_settle(now=parent.settle_after)

        parent.refresh_from_db()
        children = list(parent.children.order_by("id"))
        assert {child.broker_order_id for child in children} == set(sandbox_book(sandbox))
        assert (parent.status, parent.filled_quantity) == ("COMPLETE", 2 * NIFTY_SLICE + NIFTY_LOT)
        replay = sell_nifty(alice_client, live, 2 * NIFTY_SLICE + NIFTY_LOT, key="lost-1")
        assert (replay.status_code, replay.json()["id"], replay.json()["status"]) == (201, parent.pk, "COMPLETE")
        assert sandbox_calls(sandbox, PLACE) == 1

    def test_a_dropped_call_rejects_the_slices_only_after_the_settle_window(
        self, alice_client, sandbox, live, settings
    ):
        sandbox_fault(sandbox, kind="drop", path="/orders/regular", count=1)

        response = sell_nifty(alice_client, live, 2 * NIFTY_SLICE)

        assert response.status_code == 202
        parent = Order.objects.get(pk=response.json()["id"])
        looks = parent.settle_checks  # the look Thor took right after the send
        unknown_orders_settle(now=parent.settle_after)
        parent.refresh_from_db()
        assert parent.status == "UNKNOWN" and parent.settle_checks == looks + 1
        window = timedelta(seconds=settings.THOR_PLACEMENT_SETTLE_SECONDS["kite"])
        unknown_orders_settle(now=parent.created_at + window)
        parent.refresh_from_db()
        assert parent.status == "REJECTED"
        assert set(parent.children.values_list("status", flat=True)) == {"REJECTED"}
        assert sandbox_calls(sandbox, PLACE) == 1

    def test_slices_kite_took_but_never_showed_need_review_and_are_counted(self, alice_client, sandbox, live, settings):
        sandbox_fault(sandbox, kind="drop", path="/orders/regular", count=1)
        response = sell_nifty(alice_client, live, 2 * NIFTY_SLICE)
        parent = Order.objects.get(pk=response.json()["id"])
        # As when Kite answered that it took the call but its book never shows the slices.
        Order.objects.filter(pk=parent.pk).update(send_acknowledged=True)
        counted = orders_needing_review.labels(broker="kite")._value.get()

        window = timedelta(seconds=settings.THOR_PLACEMENT_SETTLE_SECONDS["kite"])
        unknown_orders_settle(now=parent.created_at + window)

        parent.refresh_from_db()
        assert set(parent.children.values_list("status", flat=True)) == {"NEEDS_REVIEW"}
        assert parent.status == "NEEDS_REVIEW"
        assert orders_needing_review.labels(broker="kite")._value.get() == counted + parent.children.count()
        assert sandbox_calls(sandbox, PLACE) == 1


def post_back(client, kite_order: dict):
    """What Kite posts to Thor for one of its orders, signed with the sandbox app's secret."""
    payload = {
        key: kite_order[key]
        for key in (
            "order_id",
            "status",
            "tradingsymbol",
            "exchange",
            "transaction_type",
            "quantity",
            "filled_quantity",
            "average_price",
            "order_type",
            "product",
            "validity",
            "tag",
            "order_timestamp",
        )
    }
    payload.update(user_id="AB1234", app_id=1, pending_quantity=0, price=0, trigger_price=0)
    payload["checksum"] = postback_checksum(
        order_id=payload["order_id"], order_timestamp=payload["order_timestamp"], api_secret=API_SECRET
    )
    return client.post("/api/brokers/kite/postback/", payload, format="json")


@given(
    lot=st.integers(min_value=1, max_value=200),
    freeze=st.integers(min_value=1, max_value=5000),
    lots=st.integers(min_value=1, max_value=2000),
)
def test_thor_and_the_sandbox_slice_alike_summing_to_the_order_each_within_the_freeze(lot, freeze, lots):
    """Thor's split (checked before sending, and the children it stores) is the one Kite's autoslice makes."""
    freeze = max(freeze, lot)  # an exchange's freeze quantity holds at least one lot
    quantity = lots * lot
    thor = Instrument(exchange="NFO", symbol="X", tick_size=Decimal("0.05"), lot_size=lot, freeze_quantity=freeze)
    kite = SandboxInstrument(
        token=1, exchange="NFO", tradingsymbol="X", base_price=1.0, lot_size=lot, freeze_quantity=freeze
    )
    try:
        ours = freeze_slices(instrument=thor, quantity=Decimal(quantity))
    except ValidationError:
        ours = None
    try:
        theirs = slice_sizes(kite, quantity)
    except KiteError:
        theirs = None
    assert (ours is None) == (theirs is None)
    if ours is None:
        assert quantity > MAX_SLICES * freeze_size(kite)
        return
    assert [int(size) for size in ours] == theirs
    assert sum(theirs) == quantity and len(theirs) <= MAX_SLICES
    assert all(0 < size <= freeze and size % lot == 0 for size in theirs)


# What the broker may later say of one slice: (status, share of its quantity filled).
SLICE_NEWS = st.sampled_from(
    [("OPEN", 0), ("OPEN", 0.5), ("COMPLETE", 1), ("CANCELLED", 0), ("CANCELLED", 0.5), ("REJECTED", 0)]
)


# Each example writes a dozen orders and their audit rows (and their socket messages): fewer than the profile's.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=8)
@given(
    sizes=st.lists(st.sampled_from([NIFTY_SLICE, NIFTY_LOT, 10 * NIFTY_LOT]), min_size=2, max_size=MAX_SLICES),
    data=st.data(),
)
def test_with_any_slices_failing_and_any_updates_the_parent_is_its_childrens_aggregate(alice, sizes, data):
    """Kite refuses some slices in its answer; postbacks and polls then come for the others in any order,
    repeated, late: the parent's filled quantity, average price and status are always its children's."""
    account = linked_kite_account(alice)
    parent, children = stored_slices(account, sizes)
    failing = data.draw(st.sets(st.integers(min_value=0, max_value=len(sizes) - 1)), label="failing")
    outcomes = tuple(
        SliceOutcome(error="RMS: rejected")
        if index in failing
        else SliceOutcome(broker_order_id=f"9{parent.pk}{index:02d}")
        for index in range(len(sizes))
    )

    slices_apply(parent=parent, placed=SlicedPlacement(broker_order_id=f"8{parent.pk}", children=outcomes), actor=None)

    placed = [index for index in range(len(sizes)) if index not in failing]
    news = data.draw(st.lists(st.tuples(st.sampled_from(placed), SLICE_NEWS), max_size=12) if placed else st.just([]))
    for index, (status, share) in news:
        child = children[index]
        result = OrderResult(
            broker_order_id=outcomes[index].broker_order_id,
            status=status,
            quantity=child.quantity,
            filled_quantity=(child.quantity * Decimal(str(share))).quantize(Decimal(1)),
            average_price=Decimal("24000") if share else None,
            tag=parent.client_order_id,
        )
        order_broker_update(account=account, result=result, kind="broker_postback")
    parent.refresh_from_db()
    rows = list(parent.children.order_by("id"))
    assert sum(row.quantity for row in rows) == parent.quantity
    assert [row.status for index, row in enumerate(rows) if index in failing] == ["REJECTED"] * len(failing)
    assert parent.filled_quantity == sum((row.filled_quantity for row in rows), Decimal(0))
    statuses = {row.status for row in rows}
    if statuses & {"OPEN"}:
        assert parent.status == "OPEN"
    elif len(statuses) == 1:
        assert parent.status == statuses.pop()
    else:
        assert parent.status == "CANCELLED"
    assert parent.broker_order_id == f"8{parent.pk}"


def stored_slices(account, sizes: list[int]) -> tuple[Order, list[Order]]:
    """A parent and its slices as order_place stores them before the autoslice call."""
    fields = dict(
        account=account, symbol=NIFTY_FUTURE, exchange="NFO", side="SELL", order_type="MARKET", product="NRML"
    )
    parent = Order.objects.create(
        client_order_id=f"thor{uuid.uuid4().hex[:16]}", quantity=sum(sizes), send_started_at=timezone.now(), **fields
    )
    children = [
        Order.objects.create(
            parent=parent,
            client_order_id=f"thor{uuid.uuid4().hex[:16]}",
            quantity=size,
            send_started_at=parent.send_started_at,
            **fields,
        )
        for size in sizes
    ]
    return parent, children


def test_cancelling_a_resting_sliced_order_cancels_each_slice_at_kite(alice_client, sandbox, live):
    pin = {f"NFO:{NIFTY_FUTURE}": 24000.0}
    requests.post(f"{sandbox.url}/_sandbox/prices", json=pin, timeout=5).raise_for_status()
    data = sell_nifty(alice_client, live, 2 * NIFTY_SLICE, order_type="LIMIT", price="24500.00").json()
    assert data["status"] == "OPEN", data

    response = alice_client.delete(f"/api/accounts/{live.pk}/orders/{data['id']}")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "CANCELLED"
    assert slices(response.json()) == [(NIFTY_SLICE, "CANCELLED"), (NIFTY_SLICE, "CANCELLED")]
    assert {order["status"] for order in sandbox_book(sandbox).values()} == {"CANCELLED"}
    assert sandbox_calls(sandbox, PLACE) == 1


def test_a_sliced_order_whose_sender_died_is_settled_with_its_slices_from_the_book(
    alice_client, sandbox, live, settings
):
    """Stored and sent, then the process died before the answer: the orphan task makes the parent UNKNOWN,
    and its slices are found in the book by the parent's tag; nothing is sent again."""
    parent, _ = stored_slices(live, [NIFTY_SLICE, NIFTY_LOT])
    long_ago = timezone.now() - timedelta(seconds=settings.THOR_PLACEMENT_ORPHAN_SECONDS + 5)
    Order.objects.filter(account=live).update(created_at=long_ago, send_started_at=long_ago)
    kite = KiteConnect(api_key=API_KEY, access_token=live.connection.access_token, root=sandbox.url)
    kite.place_autoslice_order(
        variety="regular",
        exchange="NFO",
        tradingsymbol=NIFTY_FUTURE,
        transaction_type="SELL",
        quantity=NIFTY_SLICE + NIFTY_LOT,
        product="NRML",
        order_type="MARKET",
        market_protection=-1,
        tag=parent.client_order_id,
    )

    unknown_orders_settle()

    parent.refresh_from_db()
    assert (parent.status, parent.filled_quantity) == ("COMPLETE", NIFTY_SLICE + NIFTY_LOT)
    book = sandbox_book(sandbox)
    assert {child.broker_order_id for child in parent.children.all()} == set(book)
    assert all(book[child.broker_order_id]["quantity"] == child.quantity for child in parent.children.all())
    assert sandbox_calls(sandbox, PLACE) == 1
