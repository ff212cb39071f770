"""A connection's health: what its broker calls recorded (through broker_call), its token's expiry, its
app's rate budget and its orders that need someone; a cache outage never fails a broker call."""

import logging
from dataclasses import replace
from datetime import timedelta

import pytest
import responses
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers import health
from brokers.adapters import kite_limits
from brokers.adapters.errors import BrokerError
from brokers.models import BrokerConnection, BrokerKind
from brokers.services import broker_call
from brokers.tests.factories import BrokerAppFactory, BrokerConnectionFactory, linked_kite_account, order
from brokers.tests.sandbox_fixtures import link, sandbox_fault
from identity.tests.factories import UserFactory
from market.selectors import market_data_connection
from thor.coordination import OccasionalWarning

pytestmark = pytest.mark.django_db

SCHWAB_API = "https://api.schwab.test"


@pytest.fixture
def kite(sandbox, alice_client):
    """Alice's Kite connection, linked through the sandbox's login."""
    return link(alice_client).connection


def profile(connection):
    return broker_call(connection, lambda adapter: adapter.profile())


def failing_profile(sandbox, connection, kind="5xx") -> BrokerError:
    sandbox_fault(sandbox, kind=kind, path="/user/profile", count=1)
    with pytest.raises(BrokerError) as failed:
        profile(connection)
    return failed.value


class TestCalls:
    def test_nothing_recorded_yet_is_unknown(self, kite):
        read = health.connection_health(kite)

        assert (read.calls, read.last_success_at, read.last_error) == ("unknown", None, None)

    def test_a_successful_call_records_when(self, kite):
        before = timezone.now()

        profile(kite)

        read = health.connection_health(kite)
        assert read.calls == "ok" and read.last_error is None
        assert before <= read.last_success_at <= timezone.now()

    def test_a_failed_call_records_when_its_code_and_thors_words(self, sandbox, kite):
        before = timezone.now()

        failing_profile(sandbox, kite)

        read = health.connection_health(kite)
        assert read.calls == "failing"
        assert (read.last_error.code, read.last_error.message) == ("unavailable", "Kite is unavailable.")
        assert before <= read.last_error.at <= timezone.now()

    def test_a_success_after_a_failure_shows_at_once(self, sandbox, kite):
        profile(kite)
        failing_profile(sandbox, kite)

        profile(kite)

        read = health.connection_health(kite)
        assert read.calls == "ok" and read.last_error.code == "unavailable"
        assert read.last_success_at > read.last_error.at

    def test_a_busy_connection_writes_its_success_once_in_a_few_seconds(self, kite):
        profile(kite)
        cache.delete(f"broker-health:{kite.pk}:ok")

        profile(kite)

        assert health.connection_health(kite).last_success_at is None

    def test_an_ended_session_is_recorded_without_its_token(self, sandbox, kite):
        token = kite.access_token

        error = failing_profile(sandbox, kite, kind="token_expired")

        read = health.connection_health(kite)
        assert error.code == "token_expired" and read.last_error.code == "token_expired"
        assert token not in read.last_error.message


class TestFailureLog:
    @pytest.fixture(autouse=True)
    def fresh_log(self, monkeypatch):
        monkeypatch.setattr(health, "failure_log", health.FailureLog(health.FAILURE_LOG_EVERY_SECONDS))

    def test_one_line_per_error_kind_a_minute_without_tokens(self, sandbox, kite, caplog):
        secrets = [kite.access_token, kite.app.api_secret]

        with caplog.at_level(logging.WARNING, logger="thor.brokers"):
            failing_profile(sandbox, kite)
            failing_profile(sandbox, kite)
            failing_profile(sandbox, kite, kind="drop")

        lines = [record.getMessage() for record in caplog.records if "Broker call failed" in record.getMessage()]
        assert lines == [
            f"Broker call failed: kite connection {kite.pk}, unavailable: Kite is unavailable. "
            "(0 more like it since the last line)"
        ]
        assert not any(secret in caplog.text for secret in secrets)

    def test_the_next_line_says_how_many_were_left_out(self, alice, caplog, monkeypatch):
        connection = linked_kite_account(alice).connection
        log = health.FailureLog(every_seconds=60.0)
        clock = [1000.0]
        monkeypatch.setattr(health.time, "monotonic", lambda: clock[0])

        with caplog.at_level(logging.WARNING, logger="thor.brokers"):
            for _ in range(3):
                log(connection, "timeout", "Kite did not answer in time.")
            log(connection, "rate_limited", "Kite rate limit hit.")
            clock[0] += 61
            log(connection, "timeout", "Kite did not answer in time.")

        lines = [record.getMessage() for record in caplog.records]
        assert len(lines) == 3
        assert lines[0].endswith("timeout: Kite did not answer in time. (0 more like it since the last line)")
        assert lines[1].endswith("rate_limited: Kite rate limit hit. (0 more like it since the last line)")
        assert lines[2].endswith("timeout: Kite did not answer in time. (2 more like it since the last line)")


class TestSafeMessage:
    def test_a_secret_in_the_words_is_masked(self, alice):
        connection = linked_kite_account(alice, access_token="tok-abcdef-123456").connection
        error = BrokerError("Refused tok-abcdef-123456 today.", code="permission_denied")

        assert health.safe_message(connection, error) == "Refused •••• today."

    def test_the_brokers_own_words_are_never_kept(self, alice):
        connection = linked_kite_account(alice).connection
        error = BrokerError("Kite refused the request.", code="permission_denied", broker_message="api_key=abc123")

        assert health.safe_message(connection, error) == "Kite refused the request."

    def test_long_words_are_cut(self, alice):
        connection = linked_kite_account(alice).connection

        assert len(health.safe_message(connection, BrokerError("x" * 5000, code="unavailable"))) == 200


class TestCacheDown:
    """Redis unreachable: the broker call still answers, the health says unknown, one line a minute."""

    @pytest.fixture(params=[True, False], ids=["exceptions-ignored", "exceptions-raised"])
    def redis_down(self, request, settings, monkeypatch):
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://:hunter2@127.0.0.1:1/0",
                "KEY_PREFIX": "thor",
                "OPTIONS": {"IGNORE_EXCEPTIONS": request.param, "SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
            }
        }
        monkeypatch.setattr(health, "_cache_down", OccasionalWarning(health.logger))

    def test_the_call_answers_and_the_health_is_unknown(self, sandbox, kite, redis_down, caplog):
        with caplog.at_level(logging.WARNING, logger="thor.brokers"):
            assert profile(kite).broker_user_id == kite.broker_user_id
            failing_profile(sandbox, kite)
            read = health.connection_health(kite)

        assert (read.calls, read.last_success_at, read.last_error) == ("unknown", None, None)
        assert read.rate_budget and all(budget.left is None for budget in read.rate_budget)
        unrecorded = [record for record in caplog.records if "not recorded" in record.getMessage()]
        assert len(unrecorded) <= 1
        assert "hunter2" not in caplog.text


class TestRateBudget:
    def test_kites_buckets_as_its_adapter_spends_them(self, kite, monkeypatch):
        # Reads counted over an hour and a half instead of a second: the call below stays in the window however
        # slow the machine.
        app_budget = kite_limits.app_budget
        monkeypatch.setattr(
            kite_limits,
            "app_budget",
            lambda app_id, category: replace(app_budget(app_id, category), per=5400 if category == "other" else 1),
        )

        profile(kite)

        budgets = {budget.bucket: budget for budget in health.connection_health(kite).rate_budget}
        assert {name: (b.left, b.capacity, b.per_seconds) for name, b in budgets.items()} == {
            "quote": (1, 1, 1),
            "orders": (10, 10, 1),
            "other": (8, 10, 5400),  # the link's profile read and this one
        }

    @responses.activate
    def test_schwabs_buckets_count_down_with_its_calls(self, alice, settings):
        settings.THOR_SCHWAB_API_BASE = SCHWAB_API
        settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 10
        app = BrokerAppFactory(tenant=alice.tenant, kind=BrokerKind.SCHWAB, name="Acme Schwab")
        connection = BrokerConnectionFactory(user=alice, app=app)
        responses.get(f"{SCHWAB_API}/trader/v1/accounts/accountNumbers", json=[])
        responses.get(f"{SCHWAB_API}/trader/v1/accounts", json=[])

        broker_call(connection, lambda adapter: adapter.account_numbers())

        budgets = {budget.bucket: budget for budget in health.connection_health(connection).rate_budget}
        assert set(budgets) == {"requests", "orders", "orders-day", "token", "instruments", "quotes"}
        requests_left = budgets["requests"]
        assert (requests_left.left, requests_left.capacity, requests_left.per_seconds) == (
            10 - len(responses.calls),
            10,
            60,
        )
        assert budgets["orders"].left == budgets["orders"].capacity == settings.THOR_SCHWAB_ORDERS_PER_MINUTE
        assert budgets["orders-day"].per_seconds == 86400


class TestOrders:
    def test_unknown_and_needs_review_orders_of_the_connections_accounts(self, alice, bob):
        account = linked_kite_account(alice)
        for n, status in enumerate(["UNKNOWN", "UNKNOWN", "NEEDS_REVIEW", "OPEN", "REJECTED", "PENDING"]):
            order(account, status, n)
        order(linked_kite_account(bob), "UNKNOWN", 0)

        read = health.connection_health(account.connection)

        assert read.orders == health.AttentionOrders(unknown=2, needs_review=1)

    def test_none_is_zero(self, alice):
        assert health.connection_health(linked_kite_account(alice).connection).orders == health.AttentionOrders(0, 0)

    def test_many_connections_in_one_query_and_their_price_bands_in_another(self, alice, django_assert_num_queries):
        connections = []
        for _ in range(3):
            account = linked_kite_account(alice)
            order(account, "UNKNOWN", 0)
            connections.append(account.connection)
        for connection in connections:
            connection.app  # loaded, as the callers load it  # noqa: B018

        with django_assert_num_queries(2):
            read = health.connections_health(connections)

        assert [read[c.pk].orders.unknown for c in connections] == [1, 1, 1]
        assert {read[c.pk].price_bands for c in connections} == {health.PriceBands.CHECKED}


class TestPriceBands:
    """A Kite connection's live orders are checked against their band when its tenant has a Kite market-data
    connection (market.selectors.market_data_connection would find one); accounts answers through the registry."""

    def test_checked_with_the_tenants_market_data_session(self, alice, bob):
        mine = linked_kite_account(alice, app=BrokerAppFactory(tenant=alice.tenant, owner=alice)).connection
        BrokerConnectionFactory(user=bob)  # bob's session on the tenant's shared app

        assert health.connection_health(mine).price_bands == health.PriceBands.CHECKED

    def test_unchecked_when_the_only_one_is_another_tenants(self, alice, charlie):
        mine = linked_kite_account(alice, app=BrokerAppFactory(tenant=alice.tenant, owner=alice)).connection
        BrokerConnectionFactory(user=charlie)

        assert health.connection_health(mine).price_bands == health.PriceBands.UNCHECKED_NO_MARKET_DATA

    def test_each_connection_by_its_own_tenant_in_one_query(self, alice, charlie, django_assert_num_queries):
        alices = linked_kite_account(alice).connection  # on acme's shared app: serves acme's market data
        charlies = linked_kite_account(
            charlie, app=BrokerAppFactory(tenant=charlie.tenant, owner=charlie)
        ).connection  # globex has none
        connections = [alices, charlies]
        for connection in connections:
            connection.app  # noqa: B018

        with django_assert_num_queries(1):
            read = health.price_bands_watch.of_connections(connections)

        assert read == {
            alices.pk: health.PriceBands.CHECKED,
            charlies.pk: health.PriceBands.UNCHECKED_NO_MARKET_DATA,
        }

    def test_none_for_a_schwab_connection_and_no_query_for_it(self, alice, django_assert_num_queries):
        app = BrokerAppFactory(tenant=alice.tenant, kind=BrokerKind.SCHWAB)
        connection = BrokerConnectionFactory(user=alice, app=app)

        with django_assert_num_queries(0):
            assert health.price_bands_watch.of_connections([connection]) == {}
        assert health.connection_health(connection).price_bands is None

    def test_none_when_no_app_checks_price_bands(self, alice, monkeypatch):
        monkeypatch.setattr(health, "price_bands_watch", None)

        assert health.connection_health(linked_kite_account(alice).connection).price_bands is None


# A session somewhere: whose tenant, on a shared app or a user's own, which broker, its status, with a token or not.
SESSIONS = st.lists(
    st.tuples(
        st.sampled_from(["acme", "globex"]),
        st.booleans(),
        st.sampled_from([BrokerKind.KITE, BrokerKind.SCHWAB]),
        st.sampled_from(list(BrokerConnection.Status)),
        st.booleans(),
    ),
    max_size=5,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=SESSIONS)
def test_price_bands_say_checked_exactly_when_the_band_check_finds_a_market_data_connection(alice, charlie, sessions):
    tenants = {"acme": alice.tenant, "globex": charlie.tenant}
    with transaction.atomic():
        for slug, shared, kind, status, has_token in sessions:
            user = UserFactory(tenant=tenants[slug])
            app = BrokerAppFactory(tenant=user.tenant, kind=kind, owner=None if shared else user)
            token = {} if has_token else {"access_token": ""}
            BrokerConnectionFactory(user=user, app=app, status=status, **token)
        connections = [
            linked_kite_account(user, app=BrokerAppFactory(tenant=user.tenant, owner=user)).connection
            for user in (alice, charlie)
        ]

        read = health.connections_health(connections)

        for connection in connections:
            # What accounts.price_bands' quote service would connect through (market.quotes).
            found = market_data_connection(tenant=connection.app.tenant, kind=BrokerKind.KITE)
            expected = health.PriceBands.UNCHECKED_NO_MARKET_DATA if found is None else health.PriceBands.CHECKED
            assert read[connection.pk].price_bands == expected
        transaction.set_rollback(True)


def test_the_token_expiry_is_the_connections(alice):
    ends = timezone.now() + timedelta(hours=3)
    connection = linked_kite_account(alice, access_expires_at=ends).connection

    assert health.connection_health(connection).token_expires_at == ends
