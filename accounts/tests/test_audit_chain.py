"""The order audit trail's hash chain (issue 22, "Audit for years"): sealed after commit, per account; an
edited, deleted or reordered row is found; nothing that deletes an account or a user takes audit rows."""

import hashlib
import threading
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.audit import account_event_record
from accounts.audit_chain import (
    CHAIN_VERSION,
    canonical_json,
    chain_seal,
    chain_seal_account,
    chain_verify,
    head_locked,
)
from accounts.models import AuditChainHead, Order, OrderEvent, TradingAccount
from accounts.streams import event_with_seq_create
from accounts.tasks import seal_audit_chains
from accounts.tests.conftest import place
from identity.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def primary(user) -> TradingAccount:
    return TradingAccount.objects.get(user=user, is_primary=True)


def account_event(account, kind="reset", after=None) -> OrderEvent:
    return account_event_record(account=account, kind=kind, before={}, after=after or {"cash": "100000.00"})


def stream_event(account, *, order=None, kind="placed", after=None) -> OrderEvent:
    """An event as the placement path writes it (one statement with the stream's sequence number)."""
    return event_with_seq_create(
        count=1,
        account_id=account.pk,
        order=order,
        actor=None,
        kind=kind,
        request_id="req-1",
        before={},
        after=after or {"status": "OPEN", "price": "1500.5"},
        broker_response={},
        order_updated_at=T0,
    )


def sql(statement, params=()):
    """An intruder at a SQL prompt with the owner's rights: one who can say "I am the purge" to the trigger
    that refuses deletes (migration 0010_audit_chain). What the chain is for."""
    with connection.cursor() as cursor:
        if statement.startswith("DELETE"):
            cursor.execute("SELECT set_config('thor.audit_purge', 'on', true)")
        cursor.execute(statement, params)


def chain(account):
    return list(OrderEvent.objects.filter(account=account).order_by("chain_index"))


class TestSealing:
    def test_chains_an_accounts_events_in_order_each_naming_the_previous_hash(self, alice):
        account = primary(alice)
        first, second, third = account_event(account), stream_event(account), account_event(account, kind="x")

        result = chain_seal()

        assert result.sealed == 3 and result.accounts == 1
        rows = chain(account)
        assert [row.pk for row in rows] == [first.pk, second.pk, third.pk]
        assert [row.chain_index for row in rows] == [0, 1, 2]
        assert rows[0].prev_hash == "0" * 64
        assert rows[1].prev_hash == rows[0].hash and rows[2].prev_hash == rows[1].hash
        head = AuditChainHead.objects.get(account=account)
        assert (head.length, head.last_hash) == (3, rows[2].hash)
        assert chain_verify(account.pk).verified == 3

    def test_the_hash_is_sha256_over_the_canonical_json_of_the_row(self, alice):
        account = primary(alice)
        event = stream_event(account)
        chain_seal()
        event.refresh_from_db()

        content = {
            "v": CHAIN_VERSION,
            "id": event.pk,
            "account_id": account.pk,
            "order_id": None,
            "actor_id": None,
            "kind": "placed",
            "request_id": "req-1",
            "before": {},
            "after": {"status": "OPEN", "price": "1500.5"},
            "broker_response": {},
            "seq": event.seq,
            "last_seq": event.last_seq,
            "order_updated_at": "2026-03-02T09:15:00+00:00",
            "created_at": event.created_at.astimezone(UTC).isoformat(),
            "chain_index": 0,
            "prev_hash": "0" * 64,
        }
        assert event.hash == hashlib.sha256(canonical_json(content).encode()).hexdigest()
        assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'

    def test_each_account_has_its_own_chain(self, alice, bob):
        account_event(primary(alice))
        account_event(primary(bob))

        chain_seal()

        assert [row.chain_index for row in chain(primary(alice))] == [0]
        assert [row.chain_index for row in chain(primary(bob))] == [0]

    def test_sealing_twice_changes_nothing(self, alice):
        account = primary(alice)
        account_event(account)
        account_event(account)
        chain_seal()
        before = [(row.chain_index, row.hash) for row in chain(account)]

        assert chain_seal().sealed == 0
        assert chain_seal_account(account.pk) == 0
        assert [(row.chain_index, row.hash) for row in chain(account)] == before

    def test_an_event_written_after_a_seal_continues_the_chain(self, alice):
        account = primary(alice)
        account_event(account)
        chain_seal()
        account_event(account)

        check = chain_verify(account.pk, seal=False)
        assert check.ok and (check.verified, check.unsealed) == (1, 1)  # the unsealed tail is said, not verified
        assert "1 not sealed yet" in check.describe()

        assert chain_verify(account.pk).verified == 2

    def test_a_crash_half_way_through_sealing_leaves_nothing_sealed(self, alice):
        account = primary(alice)
        for _ in range(4):
            account_event(account)

        with pytest.raises(RuntimeError), transaction.atomic():
            assert chain_seal_account(account.pk, batch=2, limit=2) == 2
            raise RuntimeError("the worker died here")

        assert not OrderEvent.objects.filter(account=account, chain_index__isnull=False).exists()
        assert chain_seal_account(account.pk, batch=3) == 4
        assert chain_verify(account.pk).verified == 4

    def test_the_beat_task_seals_what_is_new(self, alice):
        account_event(primary(alice))
        assert seal_audit_chains() == 1
        assert chain_seal(wait=False).sealed == 0

    def test_a_run_seals_no_more_than_its_budget_and_the_next_goes_on(self, alice, bob):
        for user in (alice, bob):
            for _ in range(3):
                account_event(primary(user))

        assert chain_seal(budget=4).sealed == 4
        assert chain_seal(budget=4).sealed == 2
        assert chain_verify(primary(alice).pk).ok and chain_verify(primary(bob).pk).verified == 3

    def test_orders_placed_through_the_api_leave_a_chain_that_verifies(self, alice_client, alice):
        assert place(alice_client).status_code == 201
        assert place(alice_client, order_type="LIMIT", price="1400.00").status_code == 201

        check = chain_verify(primary(alice).pk)

        assert check.ok and check.verified == OrderEvent.objects.filter(account=primary(alice)).count() >= 2


class TestTampering:
    @pytest.fixture
    def sealed(self, alice):
        account = primary(alice)
        events = [account_event(account), stream_event(account), account_event(account, kind="y")]
        chain_seal()
        return account, events

    def test_a_row_edited_in_sql_is_found(self, sealed):
        account, events = sealed
        sql("UPDATE accounts_orderevent SET kind = 'cancelled' WHERE id = %s", [events[1].pk])

        check = chain_verify(account.pk)

        assert not check.ok and check.bad_event_id == events[1].pk and check.bad_chain_index == 1
        assert f"account {account.pk}" in check.describe() and f"event {events[1].pk}" in check.describe()
        assert "edited" in check.problem

    def test_an_edited_json_value_or_time_is_found(self, sealed):
        account, events = sealed
        sql('UPDATE accounts_orderevent SET after = after || \'{"price": "1.0"}\' WHERE id = %s', [events[1].pk])
        assert chain_verify(account.pk).bad_event_id == events[1].pk

        sql("UPDATE accounts_orderevent SET after = %s::jsonb, created_at = created_at + interval '1 microsecond' "
            "WHERE id = %s", ['{"status": "OPEN", "price": "1500.5"}', events[1].pk])  # fmt: skip
        assert chain_verify(account.pk).bad_event_id == events[1].pk

    def test_a_row_rehashed_after_an_edit_breaks_the_next_link(self, sealed):
        account, events = sealed
        sql("UPDATE accounts_orderevent SET hash = %s WHERE id = %s", ["f" * 64, events[0].pk])

        check = chain_verify(account.pk)

        assert check.bad_event_id == events[0].pk  # its hash no longer matches its content

    def test_a_deleted_row_is_a_gap(self, sealed):
        account, events = sealed
        sql("DELETE FROM accounts_orderevent WHERE id = %s", [events[1].pk])

        check = chain_verify(account.pk)

        assert check.bad_event_id == events[2].pk and "chain_index 1 to 1 are missing" in check.problem

    def test_a_deleted_last_row_is_found_by_the_head(self, sealed):
        account, events = sealed
        sql("DELETE FROM accounts_orderevent WHERE id = %s", [events[2].pk])

        check = chain_verify(account.pk)

        assert not check.ok and check.bad_chain_index == 2 and "last events were deleted" in check.problem

    def test_a_row_unsealed_by_hand_is_resealed_at_the_end_and_leaves_a_gap(self, sealed):
        account, events = sealed
        sql("UPDATE accounts_orderevent SET chain_index = NULL, kind = 'edited' WHERE id = %s", [events[1].pk])

        assert not chain_verify(account.pk).ok

    def test_reordered_rows_are_found(self, sealed):
        account, events = sealed
        sql("UPDATE accounts_orderevent SET chain_index = 99 WHERE id = %s", [events[0].pk])
        sql("UPDATE accounts_orderevent SET chain_index = 0 WHERE id = %s", [events[1].pk])
        sql("UPDATE accounts_orderevent SET chain_index = 1 WHERE id = %s", [events[0].pk])

        check = chain_verify(account.pk)

        assert check.bad_chain_index == 0 and check.bad_event_id == events[1].pk

    def test_a_missing_head_is_found(self, sealed):
        account, _ = sealed
        AuditChainHead.objects.filter(account=account).delete()

        assert "head" in chain_verify(account.pk, seal=False).problem

    def test_events_moved_to_the_order_a_stand_in_merged_into_still_verify(self, alice):
        """accounts.broker_updates.broker_id_claim moves a stand-in's events to the real order."""
        account = primary(alice)
        fields = {"symbol": "INFY", "exchange": "NSE", "side": "BUY", "quantity": 1, "order_type": "MARKET"}
        real = Order.objects.create(account=account, client_order_id="real", product="CNC", **fields)
        stand_in = Order.objects.create(account=account, client_order_id="stand-in", product="CNC", **fields)
        stream_event(account, order=stand_in)
        chain_seal()
        stand_in.events.update(order=real)
        Order.objects.filter(pk=stand_in.pk).update(status=Order.Status.MERGED, merged_into=real)

        assert chain_verify(account.pk).ok
        other = Order.objects.create(account=account, client_order_id="other", product="CNC", **fields)
        OrderEvent.objects.filter(order=real).update(order=other)  # not a merge: an edit
        assert not chain_verify(account.pk).ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_sealers_chain_each_event_once():
    account = primary(UserFactory())
    for _ in range(30):
        account_event(account)
    start, outcomes = threading.Barrier(4), []

    def sealer():
        try:
            start.wait()
            outcomes.append(chain_seal_account(account.pk, batch=7))
        finally:
            connection.close()

    threads = [threading.Thread(target=sealer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(outcomes) == 30
    assert sorted(OrderEvent.objects.filter(account=account).values_list("chain_index", flat=True)) == list(range(30))
    assert chain_verify(account.pk).verified == 30

    # A sealer that does not wait leaves an account another holds to that one.
    account_event(account)
    with transaction.atomic():
        head_locked(account.pk)
        skipped = []
        worker = threading.Thread(target=lambda: (skipped.append(chain_seal(wait=False)), connection.close()))
        worker.start()
        worker.join()
    assert skipped[0].busy == 1 and skipped[0].sealed == 0

    # A row an order change holds (a merge moving it) is left for the next run; the sealer does not wait.
    held, after = account_event(account), account_event(account)
    with transaction.atomic():
        OrderEvent.objects.select_for_update().get(pk=held.pk)
        worker = threading.Thread(target=lambda: (chain_seal_account(account.pk), connection.close()))
        worker.start()
        worker.join()
    assert OrderEvent.objects.get(pk=after.pk).chain_index == 31
    assert OrderEvent.objects.get(pk=held.pk).chain_index is None
    assert chain_verify(account.pk).verified == 33
    assert OrderEvent.objects.get(pk=held.pk).chain_index == 32


# --- The property: whatever the writes and crashes, an untampered chain verifies; any one edit is found ----

# PostgreSQL's jsonb refuses NUL and a lone surrogate (which JSON can only write as an unpaired \u escape).
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("account_event"), st.dictionaries(text, json_values, max_size=3)),
        st.tuples(st.just("stream_event"), text),
        st.tuples(st.just("seal"), st.integers(1, 4)),
        st.tuples(st.just("crash"), st.integers(1, 4)),  # a sealer that dies after sealing n: rolled back
    ),
    min_size=1,
    max_size=10,
)
TAMPERS = {
    "kind": "UPDATE accounts_orderevent SET kind = kind || 'x' WHERE id = %s",
    "after": "UPDATE accounts_orderevent SET after = after || '{\"tampered\": true}' WHERE id = %s",
    "created_at": "UPDATE accounts_orderevent SET created_at = created_at - interval '1 second' WHERE id = %s",
    "request_id": "UPDATE accounts_orderevent SET request_id = request_id || '-' WHERE id = %s",
    "prev_hash": "UPDATE accounts_orderevent SET prev_hash = md5(prev_hash) || md5(hash) WHERE id = %s",
    "hash": "UPDATE accounts_orderevent SET hash = md5(hash) || md5(prev_hash) WHERE id = %s",
    "delete": "DELETE FROM accounts_orderevent WHERE id = %s",
}


class Crash(Exception):
    pass


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
@given(sequence=steps, tamper=st.sampled_from(sorted(TAMPERS)), victim=st.integers(0, 100))
def test_the_chain_verifies_untampered_and_never_after_one_edit(alice, sequence, tamper, victim):
    account = primary(UserFactory(tenant=alice.tenant))  # a new account each example: rows are never deleted
    written = 0
    for step, value in sequence:
        if step == "account_event":
            account_event(account, kind="reset", after=value)
            written += 1
        elif step == "stream_event":
            stream_event(account, kind=value[:40] or "placed")
            written += 1
        elif step == "seal":
            chain_seal_account(account.pk, batch=value)
        else:
            try:
                with transaction.atomic():
                    chain_seal_account(account.pk, batch=value, limit=value)
                    raise Crash
            except Crash:
                pass

    check = chain_verify(account.pk)
    assert check.ok, check.describe()
    assert (check.verified, check.unsealed) == (written, 0)
    if not written:
        return

    rows = list(OrderEvent.objects.filter(account=account).order_by("chain_index").values_list("pk", flat=True))
    sql(TAMPERS[tamper], [rows[victim % len(rows)]])
    assert not chain_verify(account.pk).ok
