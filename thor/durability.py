"""When a commit may return before its write is on disk.

PostgreSQL's `synchronous_commit` waits for the WAL to reach the disk on every commit (a flush, several
milliseconds on an ordinary disk). Turning it off for one transaction (`SET LOCAL`) makes that commit return
at once; the write reaches the disk a fraction of a second later, and only a crash of the database server
itself in that moment loses it (never half of it). Thor does that only for writes it can rebuild from a
durable one: a broker's answer to a send whose intent was committed, and waited for, before the send.
"""

from django.db import connection


def commit_without_waiting_for_disk() -> None:
    """For the current transaction only; nothing on other databases (SQLite has no such setting)."""
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
