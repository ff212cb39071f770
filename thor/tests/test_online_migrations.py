"""A migration never locks a table that already holds rows against writes for longer than a moment.

An index (or a unique field, or a foreign key, which brings its index) added to a table an earlier migration
created is built CONCURRENTLY (thor.migration_operations) in a migration with `atomic = False`; a plain AddIndex
there would stop every order placement for as long as PostgreSQL builds it. A constraint added to such a table
scans it under a lock that stops writes too: it is either written out (`RunSQL`: `ADD CONSTRAINT ... NOT VALID`,
then `VALIDATE CONSTRAINT` in a later migration) or named in ALLOWED with the reason it is safe.

The migrations written before this rule (GRANDFATHERED, up to the number each app had) ran against empty or small
tables; every later one is held to it.
"""

from types import SimpleNamespace

import pytest
from django.contrib.postgres.operations import AddIndexConcurrently as PostgresAddIndexConcurrently
from django.db import NotSupportedError, connection, migrations, models
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState

from accounts.models import Order
from thor.migration_operations import AddIndexConcurrently, RemoveIndexConcurrently

GRANDFATHERED = {"accounts": 11, "analytics": 3, "brokers": 3, "identity": 10, "market": 1}
# (app, migration name, operation index): a lock a reviewer decided is safe, and why.
ALLOWED: dict[tuple[str, str, int], str] = {}


def _number(name: str) -> int:
    prefix = name.split("_", 1)[0]
    return int(prefix) if prefix.isdigit() else 0


def _gains_an_index(old, new) -> bool:
    """Whether a field as `new` has an index (a foreign key's, db_index, unique) that the field as `old` had not."""
    return bool((new.db_index and not (old and old.db_index)) or (new.unique and not (old and old.unique)))


def locking_operations(migration, before: ProjectState) -> list[tuple[int, str]]:
    """(index, why) of each operation of `migration` that would stop writes to a table it did not create; `before`:
    the project's models as they were before it."""
    created = {op.name_lower for op in migration.operations if isinstance(op, migrations.CreateModel)}
    found = []
    for index, operation in enumerate(migration.operations):
        model = getattr(operation, "model_name", None)
        if model is None or model.lower() in created:
            continue
        if isinstance(operation, migrations.AddIndex) and not isinstance(operation, PostgresAddIndexConcurrently):
            found.append((index, f"AddIndex on {model}: use thor.migration_operations.AddIndexConcurrently"))
        elif isinstance(operation, migrations.RemoveIndex) and not isinstance(operation, RemoveIndexConcurrently):
            found.append((index, f"RemoveIndex on {model}: use thor.migration_operations.RemoveIndexConcurrently"))
        elif isinstance(operation, migrations.AddConstraint):
            found.append((index, f"AddConstraint on {model}: NOT VALID then VALIDATE (RunSQL), or say why in ALLOWED"))
        elif isinstance(operation, migrations.AddField | migrations.AlterField):
            old = None
            if isinstance(operation, migrations.AlterField):
                old = before.models[migration.app_label, model.lower()].fields.get(operation.name)
            if _gains_an_index(old, operation.field):
                found.append((index, f"{type(operation).__name__} {model}.{operation.name} brings an index: add the "
                                     "field without it (db_index=False), then AddIndexConcurrently"))  # fmt: skip
    if any(isinstance(op, PostgresAddIndexConcurrently) for op in migration.operations) and migration.atomic:
        found.append((-1, "a concurrent index cannot be built in a transaction: set atomic = False"))
    return found


def test_no_migration_since_the_rule_locks_a_table_that_holds_rows():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    ours = {key: migration for key, migration in loader.disk_migrations.items() if key[0] in GRANDFATHERED}
    assert len(ours) >= sum(GRANDFATHERED.values()), "the project's migrations were not found"
    offending = [
        f"{app}.{name} operation {index}: {why}"
        for (app, name), migration in sorted(ours.items())
        if _number(name) > GRANDFATHERED[app]
        for index, why in locking_operations(migration, loader.project_state((app, name), at_end=False))
        if (app, name, index) not in ALLOWED
    ]
    assert not offending, "\n".join(offending)


class TestTheRule:
    """The check itself, on migrations written for it."""

    @staticmethod
    def locking(*operations, atomic=True):
        migration = migrations.Migration("0099_example", "accounts")
        migration.operations = list(operations)
        migration.atomic = atomic
        return locking_operations(migration, MigrationLoader(None, ignore_no_migrations=True).project_state())

    INDEX = models.Index(fields=["account", "symbol"], name="order_account_symbol")

    def test_a_plain_index_on_an_existing_table_is_refused(self):
        found = self.locking(migrations.AddIndex("order", self.INDEX))
        assert [index for index, _ in found] == [0]

    def test_a_concurrent_index_outside_a_transaction_passes(self):
        assert self.locking(AddIndexConcurrently("order", self.INDEX), atomic=False) == []

    def test_a_concurrent_index_inside_a_transaction_is_refused(self):
        found = self.locking(AddIndexConcurrently("order", self.INDEX))
        assert [index for index, _ in found] == [-1]

    def test_an_index_on_a_table_the_migration_creates_passes(self):
        create = migrations.CreateModel("Fill", fields=[("id", models.BigAutoField(primary_key=True))])
        assert self.locking(create, migrations.AddIndex("fill", self.INDEX)) == []

    @pytest.mark.parametrize(
        "field",
        [
            models.CharField(max_length=10, default="", db_index=True),
            models.CharField(max_length=10, null=True, unique=True),
            models.ForeignKey("accounts.TradingAccount", null=True, on_delete=models.PROTECT),
        ],
    )
    def test_an_indexed_field_added_to_an_existing_table_is_refused(self, field):
        assert self.locking(migrations.AddField("order", "venue", field))

    def test_altering_a_field_that_had_its_index_already_passes(self):
        # Order.account is a foreign key (indexed) since the first migration: a new on_delete adds no index.
        account = models.ForeignKey("accounts.TradingAccount", on_delete=models.CASCADE, related_name="orders")
        assert self.locking(migrations.AlterField("order", "account", account)) == []

    def test_making_an_existing_field_unique_is_refused(self):
        assert self.locking(migrations.AlterField("order", "symbol", models.CharField(max_length=64, unique=True)))

    def test_a_plain_field_and_a_constraint_are_told_apart(self):
        plain = migrations.AddField("order", "venue", models.CharField(max_length=10, default=""))
        check = migrations.AddConstraint(
            "order", models.CheckConstraint(condition=models.Q(quantity__gt=0), name="order_quantity_positive")
        )
        assert [index for index, _ in self.locking(plain, check)] == [1]


@pytest.mark.django_db(transaction=True)
class TestTheOperations:
    """AddIndexConcurrently and RemoveIndexConcurrently on this PostgreSQL, as a migration runs them."""

    INDEX = models.Index(fields=["account", "symbol"], name="order_account_symbol_test")

    def state(self):
        return MigrationLoader(connection).project_state()

    def indexes(self) -> set[str]:
        with connection.cursor() as cursor:
            return set(connection.introspection.get_constraints(cursor, Order._meta.db_table))

    def test_an_index_is_built_and_dropped_outside_a_transaction(self):
        before = self.state()
        after = before.clone()
        add = AddIndexConcurrently("order", self.INDEX)
        add.state_forwards("accounts", after)
        with connection.schema_editor(atomic=False) as editor:
            add.database_forwards("accounts", editor, before, after)
        assert self.INDEX.name in self.indexes()

        remove = RemoveIndexConcurrently("order", self.INDEX.name)
        dropped = after.clone()
        remove.state_forwards("accounts", dropped)
        with connection.schema_editor(atomic=False) as editor:
            remove.database_forwards("accounts", editor, after, dropped)
        assert self.INDEX.name not in self.indexes()

    def test_inside_a_transaction_it_refuses_to_run(self):
        before: ProjectState = self.state()
        after = before.clone()
        add = AddIndexConcurrently("order", self.INDEX)
        add.state_forwards("accounts", after)
        with pytest.raises(NotSupportedError), connection.schema_editor(atomic=True) as editor:
            add.database_forwards("accounts", editor, before, after)
        assert self.INDEX.name not in self.indexes()


class TestOnSQLite:
    """The embedded database (`make run`) has no CONCURRENTLY: there the operations are the plain ones, and run
    inside the migration's transaction. (SQLite's own schema editor is not reachable from a test that runs on
    PostgreSQL: a recording editor of SQLite's vendor stands in for it.)"""

    class Editor:
        def __init__(self):
            self.connection = SimpleNamespace(vendor="sqlite", alias="default", in_atomic_block=True)
            self.calls = []

        def add_index(self, model, index, **options):
            self.calls.append(("add_index", model._meta.db_table, index.name, options))

        def remove_index(self, model, index, **options):
            self.calls.append(("remove_index", model._meta.db_table, index.name, options))

    def test_an_index_is_added_and_removed_as_plainly_as_addindex_would(self):
        editor = self.Editor()
        before = MigrationLoader(None, ignore_no_migrations=True).project_state()
        after = before.clone()
        add = AddIndexConcurrently("order", TestTheOperations.INDEX)
        add.state_forwards("accounts", after)
        add.database_forwards("accounts", editor, before, after)
        dropped = after.clone()
        remove = RemoveIndexConcurrently("order", TestTheOperations.INDEX.name)
        remove.state_forwards("accounts", dropped)
        remove.database_forwards("accounts", editor, after, dropped)

        name = TestTheOperations.INDEX.name
        assert editor.calls == [
            ("add_index", "accounts_order", name, {}),
            ("remove_index", "accounts_order", name, {}),
        ]
