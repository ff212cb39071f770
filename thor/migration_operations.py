"""Migration operations that leave a table open to writes while they run: what a migration of a table that already
holds rows uses (thor/tests/test_online_migrations.py holds every new migration to it).

A plain `AddIndex` on PostgreSQL takes a lock that blocks every INSERT and UPDATE of the table until the index is
built: on the orders table, no order could be placed, filled or cancelled for as long. `CREATE INDEX CONCURRENTLY`
builds it while writes go on, and cannot run inside a transaction, so a migration using these sets
`atomic = False`. The embedded SQLite database (`make run`) has no such option and no such traffic: there they
are the plain operations.
"""

from typing import TYPE_CHECKING

from django.contrib.postgres.operations import AddIndexConcurrently as PostgresAddIndexConcurrently
from django.contrib.postgres.operations import RemoveIndexConcurrently as PostgresRemoveIndexConcurrently
from django.db.migrations.operations import AddIndex, RemoveIndex
from django.db.migrations.operations.base import Operation

if TYPE_CHECKING:
    # The mixin below sits before the PostgreSQL operation in each class: to the type checker, an Operation.
    _OperationBase = Operation
else:
    _OperationBase = object


class _ConcurrentOnPostgreSQL(_OperationBase):
    """The PostgreSQL operation there; `plain` (the operation it stands for) on any other database."""

    plain: type[Operation]

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        forwards = (
            super().database_forwards if _postgresql(schema_editor) else self.plain.database_forwards.__get__(self)
        )
        return forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        backwards = (
            super().database_backwards if _postgresql(schema_editor) else self.plain.database_backwards.__get__(self)
        )
        return backwards(app_label, schema_editor, from_state, to_state)


def _postgresql(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


class AddIndexConcurrently(_ConcurrentOnPostgreSQL, PostgresAddIndexConcurrently):
    """`AddIndex`, built CONCURRENTLY on PostgreSQL."""

    plain = AddIndex


class RemoveIndexConcurrently(_ConcurrentOnPostgreSQL, PostgresRemoveIndexConcurrently):
    """`RemoveIndex`, dropped CONCURRENTLY on PostgreSQL."""

    plain = RemoveIndex
