"""The broker's answer to a placement, stored in one statement (accounts.broker_updates.placement_answer_store)
while nothing else touched the order since the request stored it, else by the locked update every other
broker word takes: never over a postback, the reconciler or another order's claim of the broker id."""

import itertools
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.audit import order_event_record, order_state
from accounts.audit_chain import chain_seal, chain_verify
from accounts.broker_updates import order_broker_update, placement_answer_store
from accounts.caches import live_snapshot_key, orders_version_key
from accounts.models import BrokerOrderId, Order, OrderEvent
from accounts.orders.place import order_create
from accounts.placement import orphaned_placements_settle
from brokers.adapters.types import OrderRequest, OrderResult
from brokers.tests.factories import linked_kite_account
from thor import snapshots

REQUEST = OrderRequest(
    symbol="INFY",
    exchange="NSE",
    side="BUY",
    quantity=Decimal("1"),
    order_type="LIMIT",
    product="CNC",
    price=Decimal("1400"),
)
broker_ids = (f"2612070000{n:05d}" for n in itertools.count())


@pytest.fixture
def account(alice):
    return linked_kite_account(alice, broker_user_id="AB1234")


def stored(account, key="key-1") -> Order:
    """A live order as a placement stores it before the send: PENDING, its send started, its audit row."""
    with transaction.atomic():
        order = order_create(account=account, request=REQUEST, key=key, fingerprint="f", sent_now=True)
        order_event_record(order=order, kind="placed")
    return order


def answered(order: Order, result: OrderResult) -> Order:
    """What accounts.placement.live_order_send does with the broker's answer."""
    stored_at_once = placement_answer_store(order=order, result=result)
    if stored_at_once is not None:
        return stored_at_once
    return order_broker_update(account=order.account, result=result, kind="sent", order=order)[0]


def postback(order: Order, broker_order_id: str, *, tagged=True, status="COMPLETE", filled="1") -> None:
    result = OrderResult(
        broker_order_id=broker_order_id,
        status=status,
        symbol="INFY",
        exchange="NSE",
        side="BUY",
        quantity=Decimal("1"),
        filled_quantity=Decimal(filled),
        average_price=Decimal("1399.5") if Decimal(filled) else None,
        order_type="LIMIT",
        product="CNC",
        price=Decimal("1400"),
        tag=order.client_order_id if tagged else "",
    )
    order_broker_update(account=order.account, result=result, kind="broker_postback")


def kinds(order: Order) -> list[str]:
    return list(OrderEvent.objects.filter(order=order).order_by("id").values_list("kind", flat=True))


@pytest.mark.django_db(transaction=True)
class TestAnAnswerNothingRaced:
    def test_is_one_statement_committing_the_order_its_broker_id_and_its_audit_row(self, account):
        order = stored(account)
        cache.set(orders_version_key(account.pk), 5, None)
        placed = OrderEvent.objects.get(order=order)

        with CaptureQueriesContext(connection) as queries:
            placement_answer_store(order=order, result=OrderResult(broker_order_id="26120700001", status="OPEN"))

        assert len(queries) == 1
        order.refresh_from_db()
        assert (order.status, order.broker_order_id) == ("OPEN", "26120700001")
        assert BrokerOrderId.objects.get(broker_order_id="26120700001").order_id == order.pk
        sent = OrderEvent.objects.get(order=order, kind="sent")
        assert (sent.seq, sent.last_seq) == (placed.last_seq + 1, placed.last_seq + 1)
        assert sent.before["status"] == "PENDING"
        assert sent.after == order_state(order)
        assert sent.order_updated_at == order.updated_at
        assert cache.get(orders_version_key(account.pk)) == 6  # the kept orders pages are out of date

    def test_writes_the_columns_it_changed_and_no_other(self, account):
        order = stored(account)
        # A column the answer does not speak of, changed behind the request's back without touching updated_at
        # (as a refused send gives its key back): the answer must not write the request's copy over it.
        Order.objects.filter(pk=order.pk).update(request_fingerprint="changed elsewhere")

        with CaptureQueriesContext(connection) as queries:
            answered(order, OrderResult(broker_order_id="26120700002", status="OPEN", raw={"order_id": "26120700002"}))

        update = queries[0]["sql"].split(" WHERE ")[0]
        assert '"status"' in update and '"broker_order_id"' in update and '"raw"' in update
        assert '"symbol"' not in update and '"request_fingerprint"' not in update and '"quantity"' not in update
        order.refresh_from_db()
        assert (order.request_fingerprint, order.raw) == ("changed elsewhere", {"order_id": "26120700002"})

    def test_forgets_the_accounts_live_snapshots_once_committed_and_keeps_the_last_good(self, account):
        order = stored(account)
        base = live_snapshot_key(account, "positions")
        snapshots.read_through(base, lambda: ["before the order"], fresh_ttl=60, stale_ttl=600)

        answered(order, OrderResult(broker_order_id="26120700004", status="OPEN"))

        assert snapshots.fresh_body(base, repr) is None and cache.get(f"{base}:fresh") is None
        assert snapshots.peek(base).data == ["before the order"]

    def test_stores_the_answer_when_redis_is_down(self, account, redis_down):
        order = stored(account)

        answered(order, OrderResult(broker_order_id="26120700005", status="OPEN"))

        order.refresh_from_db()
        assert (order.status, kinds(order)) == ("OPEN", ["placed", "sent"])

    def test_seals_into_the_audit_chain_like_any_row(self, account):
        order = stored(account)
        answered(order, OrderResult(broker_order_id="26120700003", status="OPEN"))

        chain_seal()

        assert chain_verify(account.pk).verified == 2


@pytest.mark.django_db(transaction=True)
class TestAnAnswerSomethingRaced:
    def test_a_postback_that_came_first_is_kept_and_the_statement_writes_nothing(self, account):
        order = stored(account)
        postback(order, "26120700010")

        assert placement_answer_store(order=order, result=OrderResult("26120700010", status="OPEN")) is None
        order = answered(order, OrderResult("26120700010", status="OPEN"))

        order.refresh_from_db()
        assert (order.status, order.filled_quantity) == ("COMPLETE", Decimal("1"))
        assert kinds(order) == ["placed", "broker_postback"]

    def test_a_stand_in_holding_the_id_fails_the_whole_statement_then_is_merged_never_deleted(self, account):
        order = stored(account)
        postback(order, "26120700011", tagged=False)  # Thor could not tell it was this order's: a stand-in
        stand_in = Order.objects.get(broker_order_id="26120700011")

        assert placement_answer_store(order=order, result=OrderResult("26120700011", status="OPEN")) is None
        order.refresh_from_db()
        assert (order.status, order.broker_order_id, kinds(order)) == ("PENDING", "", ["placed"])

        answered(order, OrderResult("26120700011", status="OPEN"))

        order.refresh_from_db()
        stand_in.refresh_from_db()
        assert (order.status, order.broker_order_id) == ("COMPLETE", "26120700011")
        assert (stand_in.status, stand_in.merged_into_id) == ("MERGED", order.pk)
        assert BrokerOrderId.objects.get(broker_order_id="26120700011").order_id == order.pk

    def test_another_placement_holding_the_id_keeps_it(self, account):
        other, order = stored(account, key="other"), stored(account)
        answered(other, OrderResult("26120700012", status="OPEN"))

        order = answered(order, OrderResult("26120700012", status="OPEN"))

        order.refresh_from_db()
        assert (order.status, order.broker_order_id) == ("PENDING", "")
        assert Order.objects.get(broker_order_id="26120700012").pk == other.pk

    def test_the_reconciler_that_gave_the_send_up_is_not_overwritten_by_the_statement(self, account):
        order = stored(account)
        orphaned_placements_settle(now=timezone.now() + timedelta(hours=1))

        assert placement_answer_store(order=order, result=OrderResult("26120700013", status="OPEN")) is None
        answered(order, OrderResult("26120700013", status="OPEN"))

        order.refresh_from_db()
        assert (order.status, order.broker_order_id) == ("OPEN", "26120700013")
        assert kinds(order) == ["placed", "placement_orphaned", "sent"]

    def test_a_postback_holding_the_row_makes_the_statement_wait_then_write_nothing(self, account):
        order = stored(account)
        outcome = []

        def answer():
            try:
                outcome.append(placement_answer_store(order=order, result=OrderResult("26120700014", status="OPEN")))
            finally:
                connection.close()

        with transaction.atomic():
            Order.objects.select_for_update().get(pk=order.pk)
            postback(order, "26120700014")
            racer = threading.Thread(target=answer)
            racer.start()
            time.sleep(0.3)
            assert racer.is_alive()  # waiting on the row the postback holds
        racer.join(timeout=10)

        assert outcome == [None]
        order.refresh_from_db()
        assert (order.status, kinds(order)) == ("COMPLETE", ["placed", "broker_postback"])


@pytest.mark.django_db
def test_inside_a_transaction_a_failed_statement_leaves_the_transaction_usable(account):
    order = stored(account)
    postback(order, "26120700020", tagged=False)

    with transaction.atomic():
        assert placement_answer_store(order=order, result=OrderResult("26120700020", status="OPEN")) is None
        assert Order.objects.filter(account=account).count() == 2


# --- The property: whatever raced the answer, it lands once, on the right order, never backwards ---------

RACES = ["nothing", "tagged postback", "untagged postback", "partial fill", "orphaned", "another placement", "touched"]


@pytest.mark.django_db(transaction=True)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(race=st.sampled_from(RACES), status=st.sampled_from(["OPEN", "COMPLETE", "PENDING", "TRIGGER PENDING"]))
def test_whatever_raced_the_answer_the_broker_id_has_one_order_and_the_audit_ends_at_the_row(account, race, status):
    order, broker_order_id = stored(account, key=None), next(broker_ids)
    holder = order
    if race in ("tagged postback", "untagged postback"):
        postback(order, broker_order_id, tagged=race == "tagged postback")
    elif race == "partial fill":
        postback(order, broker_order_id, status="OPEN", filled="0.5")
    elif race == "orphaned":
        orphaned_placements_settle(now=timezone.now() + timedelta(hours=1))
    elif race == "another placement":
        holder = stored(account, key=None)
        answered(holder, OrderResult(broker_order_id, status="OPEN"))
    elif race == "touched":
        Order.objects.filter(pk=order.pk).update(settle_checks=1, updated_at=timezone.now())
    rows = set(Order.objects.values_list("pk", flat=True))

    answered(order, OrderResult(broker_order_id, status=status))

    assert rows <= set(Order.objects.values_list("pk", flat=True))  # no row gone
    assert Order.objects.filter(account=account, broker_order_id=broker_order_id).count() == 1
    assert BrokerOrderId.objects.get(account=account, broker_order_id=broker_order_id).order_id == holder.pk
    order.refresh_from_db()
    if race in ("tagged postback", "untagged postback"):
        assert (order.status, order.filled_quantity) == ("COMPLETE", Decimal("1"))
    if race == "partial fill":
        assert order.filled_quantity == Decimal("0.5")
    if race != "another placement":
        assert order.broker_order_id == broker_order_id
        assert kinds(order).count("sent") <= 1
    last = OrderEvent.objects.filter(order=order).order_by("id").last()
    assert last.after == order_state(order)
    seqs = list(OrderEvent.objects.filter(account=account, seq__isnull=False).values_list("seq", flat=True))
    assert len(seqs) == len(set(seqs))
    chain_seal()
    assert chain_verify(account.pk).ok
