import faulthandler
import os
import sys
import threading
import time

import pytest
import yaml
from django.conf import settings
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from identity.tests.factories import TenantFactory, UserFactory
from identity.tokens import token_pair_for

# `sandbox` and `schwab_sandbox`, the broker sandbox over real HTTP, for the end-to-end tests of every app
# (as plugins, their one server a pytest process is shared by every module that asks for them);
# `instrument_master`, a small instrument master for the tests that trade listed contracts.
pytest_plugins = ["brokers.tests.sandbox_fixtures", "brokers.tests.schwab_link_steps", "market.tests.fixtures"]

# The property tests' example budget (each example places a dozen orders against the database). `make test`
# loads the smaller one with --hypothesis-profile. Both keep what Hypothesis chose for the environment: on CI
# its "ci" profile (derandomized, the same examples every run), elsewhere new examples each run.
hypothesis_settings.register_profile(
    "thor",
    parent=hypothesis_settings.get_profile(hypothesis_settings.get_current_profile_name()),
    max_examples=40,
    deadline=None,
)
hypothesis_settings.register_profile("make-test", parent=hypothesis_settings.get_profile("thor"), max_examples=20)
hypothesis_settings.load_profile("thor")


def pytest_configure(config):
    engine = settings.DATABASES["default"]["ENGINE"]
    if os.environ.get("CI") == "true" and "postgresql" not in engine:
        pytest.exit("CI must run against PostgreSQL: set DATABASE_URL (make test does).", returncode=2)
    # Password hashing strength is not under test; a fast hasher keeps the suite quick.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Paper fills at known prices; a test that wants quotes through a market-data connection says so (`market_data`).
    settings.THOR_PAPER_PRICE_SOURCE = "fixed"


_session_status: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _session_status["code"] = int(exitstatus)


def pytest_unconfigure(config):
    """A thread a test left running (an event loop async_to_sync could not close, seen once in a few
    hundred runs of the socket tests) would make the interpreter wait for it forever at exit, after the
    results are in. A watchdog gives the exit half a minute, then prints every stack and leaves with the
    tests' own status."""

    def give_up():
        sys.stderr.write("\nStill exiting 30 s after the tests; the threads holding it follow.\n")
        faulthandler.dump_traceback(all_threads=True)
        sys.stderr.flush()
        os._exit(_session_status.get("code", 1))

    watchdog = threading.Timer(30, give_up)
    watchdog.daemon = True
    watchdog.start()


# What migrations make and no test changes: the content types and the permissions derived from the models. The flush
# after each transactional test emptied them, and post_migrate (Django's only receivers here) then wrote every one
# back, most of a flush's time; kept, it has nothing to do and is not sent.
KEPT_BY_THE_FLUSH = frozenset({"django_content_type", "auth_permission"})


@pytest.fixture(scope="session", autouse=True)
def _flush_by_delete():
    """A transactional test ends with Django's flush, a TRUNCATE of every table: on PostgreSQL each truncated
    table gets new files, and the commit drops the old ones from the shared buffers, a cost paid per table
    whatever few rows the test left. Deleting the rows empties the same tables in the same transaction, far
    cheaper for the handful a test writes. The audit and order tables refuse a DELETE (their triggers; TRUNCATE
    fires none), so the flush's transaction runs with triggers off (session_replication_role, a superuser's
    setting: the test databases' owner on this machine and in CI; elsewhere the TRUNCATE stays). The same tables
    emptied, sequences kept as the TRUNCATE kept them, but for KEPT_BY_THE_FLUSH and the post_migrate that would
    only write them back."""
    from django.core.management.commands import flush
    from django.db import connection

    if connection.vendor != "postgresql":
        yield
        return
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush
    post_migrate = flush.emit_post_migrate_signal
    superuser = {}  # alias -> whether its role may turn triggers off
    kept = {"rows": False}  # whether the last flush kept KEPT_BY_THE_FLUSH

    def is_superuser(ops) -> bool:
        alias = ops.connection.alias
        if alias not in superuser:
            with ops.connection.cursor() as cursor:
                cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                superuser[alias] = bool(cursor.fetchone()[0])
        return superuser[alias]

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        kept["rows"] = False
        if not tables or reset_sequences or not is_superuser(self):
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        kept["rows"] = True
        # SET LOCAL lasts until the flush's own transaction ends; set back at the end all the same, in case a
        # caller flushed inside a transaction of its own.
        return [
            "SET LOCAL session_replication_role = replica;",
            *(
                f"DELETE FROM {style.SQL_FIELD(self.quote_name(table))};"  # noqa: S608 (Django's table names)
                for table in tables
                if table not in KEPT_BY_THE_FLUSH
            ),
            "SET LOCAL session_replication_role = origin;",
        ]

    def post_migrate_unless_kept(*args, **kwargs):
        if not kept["rows"]:
            post_migrate(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", sql_flush)
        patch.setattr(flush, "emit_post_migrate_signal", post_migrate_unless_kept)
        yield


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache: throttles, snapshots and OAuth nonces live there."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Each test gets its own channel layer. channels-redis keeps per-process receive state (a lock, buffers,
    cleaner tasks) bound to the event loop that made it, and each async_to_sync scenario runs a new loop:
    state a test left behind (a socket it never closed) must not reach the next one."""
    from channels.layers import channel_layers

    from thor.realtime import publish_flush

    channel_layers.backends.clear()
    yield
    publish_flush()  # what this test published is sent to its own layer, not the next test's
    channel_layers.backends.clear()


@pytest.fixture
def ticks_flushed():
    """The market stream's watched set and last prices, Redis's and the embedded mode's, empty before and after
    the test (the tick tests' `pytestmark`)."""
    from market import caches

    caches.ticks_flush()
    yield
    caches.ticks_flush()


@pytest.fixture(scope="session")
def openapi_schema(django_db_setup, django_db_blocker) -> dict:
    """/api/schema/ as an anonymous client reads it (YAML), parsed: built once per process, as it is the same
    for every test and building and parsing it takes longer than most tests. Read it, never change it."""
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/")
    assert response.status_code == 200
    return yaml.load(response.content, Loader=yaml.CSafeLoader)


@pytest.fixture
def time_passes(time_machine):
    """`time_passes(seconds)` lets the seconds pass without waiting them out, for Python and for Redis: the
    wall clock moves on (time-machine), every Redis key's TTL runs down by as much (a key whose TTL runs out
    is gone), and the rate buckets, stamped with Redis's own clock (or, without Redis, the process's own on
    time.monotonic), hold their grants as made that much earlier. Not time.monotonic itself, which time-machine
    leaves alone: other code timed by it still waits for real."""
    from thor import coordination, ratelimit

    travelling = []

    def advance(seconds: float) -> None:
        if not travelling:
            time_machine.move_to(time.time(), tick=True)
            travelling.append(True)
        time_machine.shift(seconds)
        with ratelimit._local_lock:
            for bucket, log in ratelimit._local_logs.items():
                ratelimit._local_logs[bucket] = [(granted - seconds, number) for granted, number in log]
        if not coordination.uses_redis():
            return
        store, ms = coordination.redis_client(), int(seconds * 1000)
        for key in store.scan_iter(count=1000):
            if key.startswith(b"thor:bucket:") and (granted := store.zrange(key, 0, -1, withscores=True)):
                store.zadd(key, {member: at - seconds for member, at in granted})
            left = store.pttl(key)
            if 0 < left <= ms:
                store.delete(key)
            elif left > ms:
                store.pexpire(key, left - ms)

    return advance


@pytest.fixture
def redis_down(settings):
    """The cache as production configures it (django-redis, its errors ignored) on a Redis that is not there."""
    from thor.throttles import outage_forget

    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "KEY_PREFIX": "thor",
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    outage_forget()
    yield
    outage_forget()


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_for(user)['access']}")
    return client


@pytest.fixture
def tenant(db):
    """Trades Indian instruments: its users' primary paper accounts are in INR, with a USD one on request."""
    return TenantFactory(
        slug="acme",
        allowed_origins=["http://localhost:5173", "https://app.acme.test"],
        currency="INR",
        paper_other_currencies={"USD": "100000.00"},
    )


@pytest.fixture
def other_tenant(db):
    return TenantFactory(slug="globex", allowed_origins=["https://globex.test"], currency="INR")


@pytest.fixture
def alice(tenant):
    """Owns things in tenant acme."""
    return UserFactory(email="alice@acme.test", tenant=tenant)


@pytest.fixture
def bob(tenant):
    """Same tenant as Alice, owns nothing."""
    return UserFactory(email="bob@acme.test", tenant=tenant)


@pytest.fixture
def charlie(other_tenant):
    """Another tenant altogether."""
    return UserFactory(email="charlie@globex.test", tenant=other_tenant)


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture
def alice_client(alice):
    return client_for(alice)


@pytest.fixture
def bob_client(bob):
    return client_for(bob)


@pytest.fixture
def charlie_client(charlie):
    return client_for(charlie)
