"""export_audit, verify_audit and purge_audit as an operator runs them, bad and hostile input included; the
purge keeps the chain verifiable, and nothing else deletes an audit row."""

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.db.models import ProtectedError
from django.test import Client
from django.utils import timezone

from accounts.audit import account_event_record
from accounts.audit_chain import canonical_json, chain_seal, chain_verify
from accounts.audit_retention import audit_purge
from accounts.models import AuditChainHead, AuditDeletionRefused, OrderEvent, TradingAccount
from identity.models import User

pytestmark = pytest.mark.django_db

MARCH_1 = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
MARCH_2 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
MARCH_3 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(*args) -> CommandError:
    with pytest.raises(CommandError) as error:
        run(*args)
    return error.value


def primary(user) -> TradingAccount:
    return TradingAccount.objects.get(user=user, is_primary=True)


@pytest.fixture
def trail(alice):
    """Alice's account: an event on each of three days (UTC), then one the sealer has not seen."""
    account = primary(alice)
    events = [
        OrderEvent.objects.create(account=account, kind="placed", after={"price": "1500.5"}, created_at=moment)
        for moment in (MARCH_1, MARCH_2, MARCH_3)
    ]
    return account, events


def sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def tamper(event):
    sql("UPDATE accounts_orderevent SET kind = 'cancelled' WHERE id = %s", [event.pk])


class TestVerifyAudit:
    def test_says_each_chain_verified(self, trail, charlie):
        account, _ = trail
        account_event_record(account=primary(charlie), kind="reset", before={}, after={})

        out, _ = run("verify_audit")

        assert f"account {account.pk}: 3 events verified" in out and "2 audit chains verified." in out

    def test_a_tampered_row_is_exit_code_1_naming_the_account_and_the_event(self, trail):
        account, events = trail
        run("verify_audit")
        tamper(events[1])

        error = refused("verify_audit", "--tenant", "acme")

        assert error.returncode == 1
        assert f"account {account.pk}: chain broken at event {events[1].pk} (chain_index 1)" in str(error)

    def test_one_account_or_one_tenant(self, trail, charlie):
        account, events = trail
        account_event_record(account=primary(charlie), kind="reset", before={}, after={})
        run("verify_audit")  # sealed: an edit before the sealer's next run is sealed as it stands
        tamper(events[0])

        out, _ = run("verify_audit", "--tenant", "globex")
        assert "1 audit chains verified." in out
        assert refused("verify_audit", "--account", str(account.pk)).returncode == 1

    @pytest.mark.parametrize(
        "args",
        [
            ("--tenant", "nope"),
            ("--tenant", "acme\x00; DROP TABLE accounts_orderevent"),
            ("--tenant", "x" * 100_000),
            ("--tenant", "../../etc/passwd"),
            ("--tenant", ""),
            ("--account", "999999999"),
            ("--account", "-1"),
            ("--account", str(2**70)),
        ],
    )
    def test_hostile_input_is_exit_code_2_with_one_line(self, trail, args):
        error = refused("verify_audit", *args)

        assert error.returncode == 2 and "Unknown" in str(error) and len(str(error)) < 200
        assert OrderEvent.objects.count() == 3

    def test_an_account_of_another_tenant_is_unknown_there(self, trail, charlie):
        error = refused("verify_audit", "--tenant", "acme", "--account", str(primary(charlie).pk))

        assert error.returncode == 2 and "of tenant 'acme'" in str(error)

    def test_an_account_without_a_trail_verifies_empty_and_gets_no_head(self, bob):
        out, _ = run("verify_audit", "--account", str(primary(bob).pk))

        assert f"account {primary(bob).pk}: 0 events verified" in out
        assert not AuditChainHead.objects.exists()

    def test_a_non_number_account_is_refused_by_the_parser(self):
        assert "invalid int value" in str(refused("verify_audit", "--account", "1 OR 1=1"))


class TestExportAudit:
    def test_exports_the_days_asked_as_json_lines_each_hash_recomputable(self, trail, tmp_path):
        account, events = trail
        target = tmp_path / "audit.jsonl"

        _, err = run(
            "export_audit", "--tenant", "acme", "--from", "2026-03-02", "--to", "2026-03-03", "--output", str(target)
        )

        lines = [json.loads(line) for line in target.read_text().splitlines()]
        exported, summary = lines[:-1], lines[-1]["summary"]
        assert [line["event"]["id"] for line in exported] == [events[1].pk, events[2].pk]  # March 1st is not asked
        for line in exported:
            assert line["hash"] == hashlib.sha256(canonical_json(line["event"]).encode()).hexdigest()
            assert line["sealed"] is True and line["event"]["account_id"] == account.pk
        assert exported[1]["event"]["prev_hash"] == exported[0]["hash"]
        assert exported[0]["event"]["prev_hash"] == OrderEvent.objects.get(pk=events[0].pk).hash
        assert summary["chains_ok"] is True and summary["events"] == 2
        assert summary["accounts"][0] | {"account_id": account.pk, "verified": 3, "ok": True} == summary["accounts"][0]
        assert f"2 events written to {target}" in err
        assert not list(tmp_path.glob(".*partial")) and target.stat().st_mode & 0o777 == 0o600

    def test_to_stdout_with_progress_on_stderr(self, trail):
        out, err = run(
            "export_audit", "--tenant", "acme", "--from", "2026-01-01", "--to", "2026-12-31", "--progress-every", "2"
        )

        assert len(out.splitlines()) == 4 and "export_audit: 2 events written" in err

    def test_the_export_seals_what_is_new_before_it_reads(self, trail):
        account, _ = trail
        run("verify_audit")
        OrderEvent.objects.create(account=account, kind="late", created_at=MARCH_3)

        out, _ = run("export_audit", "--tenant", "acme", "--from", "2026-03-03", "--to", "2026-03-03")

        lines = [json.loads(line) for line in out.splitlines()[:-1]]
        assert [(line["event"]["kind"], line["sealed"]) for line in lines] == [("placed", True), ("late", True)]
        assert lines[1]["event"]["chain_index"] == 3

    def test_a_broken_chain_still_writes_the_file_and_is_exit_code_1(self, trail, tmp_path):
        _, events = trail
        run("verify_audit")
        tamper(events[2])
        target = tmp_path / "audit.jsonl"

        error = refused(
            "export_audit", "--tenant", "acme", "--from", "2026-03-01", "--to", "2026-03-03", "--output", str(target)
        )

        assert error.returncode == 1 and f"event {events[2].pk}" in str(error)
        summary = json.loads(target.read_text().splitlines()[-1])["summary"]
        assert summary["chains_ok"] is False and summary["accounts"][0]["bad_event_id"] == events[2].pk

    @pytest.mark.parametrize(
        ("day_from", "day_to", "message"),
        [
            ("2026-02-30", "2026-03-01", "--from must be a day"),
            ("2026-3-1", "2026-03-01", "--from must be a day"),
            ("2026-03-01T00:00", "2026-03-02", "--from must be a day"),
            ("20260301", "2026-03-02", "--from must be a day"),
            ("yesterday", "2026-03-02", "--from must be a day"),
            ("2026-03-01", "2026-03-01\x00", "--to must be a day"),
            ("2026-03-01", "9" * 5000, "--to must be a day"),
            ("2026-03-02", "2026-03-01", "is after --to"),
        ],
    )
    def test_bad_days_are_exit_code_2(self, trail, day_from, day_to, message):
        error = refused("export_audit", "--tenant", "acme", "--from", day_from, "--to", day_to)

        assert error.returncode == 2 and message in str(error) and len(str(error)) < 200

    def test_an_unknown_tenant_is_exit_code_2(self, trail):
        error = refused("export_audit", "--tenant", "acme' OR '1'='1", "--from", "2026-03-01", "--to", "2026-03-01")

        assert error.returncode == 2 and "Unknown tenant" in str(error)

    def test_an_existing_file_is_not_overwritten_without_force(self, trail, tmp_path):
        target = tmp_path / "audit.jsonl"
        target.write_text("keep me")
        days = ("--from", "2026-03-01", "--to", "2026-03-03")

        error = refused("export_audit", "--tenant", "acme", *days, "--output", str(target))
        assert error.returncode == 2 and "--force" in str(error) and target.read_text() == "keep me"

        run("export_audit", "--tenant", "acme", *days, "--output", str(target), "--force")
        assert len(target.read_text().splitlines()) == 4

    @pytest.mark.parametrize("where", ["dir", "missing/dir/audit.jsonl", "nul\x00.jsonl"])
    def test_an_unusable_output_is_exit_code_2(self, trail, tmp_path, where):
        target = tmp_path if where == "dir" else tmp_path / where

        error = refused(
            "export_audit", "--tenant", "acme", "--from", "2026-03-01", "--to", "2026-03-01", "--output", str(target)
        )

        assert error.returncode == 2 and "--output" in str(error)

    def test_another_tenants_events_are_not_exported(self, trail, charlie):
        OrderEvent.objects.create(account=primary(charlie), kind="theirs", created_at=MARCH_2)

        out, _ = run("export_audit", "--tenant", "acme", "--from", "2026-03-02", "--to", "2026-03-02")

        assert "theirs" not in out and len(out.splitlines()) == 2


class TestPurgeAudit:
    def test_only_a_prefix_of_the_chain_goes(self, alice):
        account = primary(alice)
        OrderEvent.objects.create(account=account, kind="recent", created_at=timezone.now() - timedelta(days=1))
        OrderEvent.objects.create(account=account, kind="ancient", created_at=timezone.now() - timedelta(days=2000))

        out, _ = run("purge_audit")

        assert "removed 0 events of 0 accounts" in out  # the ancient row was chained after a recent one: it waits
        assert OrderEvent.objects.filter(account=account).count() == 2

    def test_a_dry_run_then_the_old_prefix_goes_and_the_rest_verifies(self, alice):
        account = primary(alice)
        OrderEvent.objects.create(account=account, kind="ancient", created_at=timezone.now() - timedelta(days=2000))
        OrderEvent.objects.create(account=account, kind="recent", created_at=timezone.now() - timedelta(days=1))

        out, _ = run("purge_audit", "--dry-run")
        assert f"account {account.pk}: would remove 1 events" in out and "Retention 1827 days" in out
        assert OrderEvent.objects.filter(account=account).count() == 2

        out, _ = run("purge_audit")

        assert f"account {account.pk}: removed 1 events" in out
        assert list(OrderEvent.objects.filter(account=account).values_list("kind", flat=True)) == ["recent"]
        assert "1 audit chains verified." in run("verify_audit")[0]


def test_purge_keeps_young_events_and_a_checkpoint_the_rest_verifies_from(alice, settings):
    settings.THOR_AUDIT_RETENTION_DAYS = 30
    account = primary(alice)
    old = [
        OrderEvent.objects.create(account=account, kind="old", created_at=MARCH_3 - timedelta(days=40 - n))
        for n in range(3)
    ]
    young = OrderEvent.objects.create(account=account, kind="young", created_at=MARCH_3)
    chain_seal()

    assert audit_purge(now=MARCH_3, dry_run=True).removed == {account.pk: 3}
    assert OrderEvent.objects.filter(account=account).count() == 4

    result = audit_purge(now=MARCH_3)

    assert result.removed == {account.pk: 3}
    assert list(OrderEvent.objects.filter(account=account).values_list("pk", flat=True)) == [young.pk]
    head = AuditChainHead.objects.get(account=account)
    assert head.purged_count == 3 and head.purged_through_hash == OrderEvent.objects.get(pk=young.pk).prev_hash
    assert chain_verify(account.pk).ok
    assert old[0].pk not in OrderEvent.objects.values_list("pk", flat=True)
    sql("UPDATE accounts_orderevent SET prev_hash = %s WHERE id = %s", ["0" * 64, young.pk])
    assert not chain_verify(account.pk).ok  # the checkpoint pins the kept part to what was removed


def test_purge_refuses_an_account_whose_chain_is_broken(alice, settings):
    settings.THOR_AUDIT_RETENTION_DAYS = 30
    account = primary(alice)
    first = OrderEvent.objects.create(account=account, kind="old", created_at=MARCH_3 - timedelta(days=60))
    OrderEvent.objects.create(account=account, kind="old", created_at=MARCH_3 - timedelta(days=50))
    chain_seal()
    sql("UPDATE accounts_orderevent SET kind = 'laundered' WHERE id = %s", [first.pk])

    result = audit_purge(now=MARCH_3)

    assert result.removed == {} and result.refused[0].bad_event_id == first.pk
    assert OrderEvent.objects.filter(account=account).count() == 2


class TestNothingDeletesAuditRows:
    def test_an_account_with_events_cannot_be_deleted(self, alice):
        account = primary(alice)
        account_event_record(account=account, kind="reset", before={}, after={})

        with pytest.raises(ProtectedError):
            account.delete()
        with pytest.raises(ProtectedError):
            alice.delete()  # the user's accounts cascade, into the protected events

        assert OrderEvent.objects.filter(account=account).count() == 1

    def test_a_user_who_acted_cannot_be_deleted(self, alice, bob):
        account_event_record(account=primary(alice), kind="reset", before={}, after={}, actor=bob)

        with pytest.raises(ProtectedError):
            bob.delete()  # SET_NULL would rewrite a hashed row

    def test_the_database_refuses_a_delete_that_is_not_the_purge(self, alice):
        event = account_event_record(account=primary(alice), kind="reset", before={}, after={})

        with (
            pytest.raises(DatabaseError, match=r"only by manage\.py purge_audit"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("DELETE FROM accounts_orderevent WHERE id = %s", [event.pk])

        assert OrderEvent.objects.filter(pk=event.pk).exists()

    def test_the_orm_refuses_to_delete_audit_rows(self, alice):
        event = account_event_record(account=primary(alice), kind="reset", before={}, after={})

        with pytest.raises(AuditDeletionRefused):
            event.delete()
        with pytest.raises(AuditDeletionRefused):
            OrderEvent.objects.filter(pk=event.pk).delete()
        assert OrderEvent.objects.filter(pk=event.pk).exists()


class TestAdmin:
    @pytest.fixture
    def ops_client(self, tenant):
        ops = User.objects.create_superuser("ops@thor.test", "ops-password-123", tenant=tenant)
        client = Client()
        client.force_login(ops)
        return client

    def test_audit_rows_are_read_only_and_an_account_with_them_is_not_deleted(self, ops_client, trail):
        account, events = trail
        run("verify_audit")

        page = ops_client.get(f"/admin/accounts/orderevent/{events[0].pk}/change/")
        assert page.status_code == 200 and b'name="kind"' not in page.content and b"chain" in page.content
        assert ops_client.post(f"/admin/accounts/orderevent/{events[0].pk}/delete/").status_code == 403

        refusal = ops_client.get(f"/admin/accounts/tradingaccount/{account.pk}/delete/")
        assert b"Cannot delete trading account" in refusal.content and b"order event" in refusal.content
        ops_client.post(f"/admin/accounts/tradingaccount/{account.pk}/delete/", {"post": "yes"})
        assert TradingAccount.objects.filter(pk=account.pk).exists() and OrderEvent.objects.count() == 3
