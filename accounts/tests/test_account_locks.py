"""accounts.account_locks: the one query that locks an account, its user and its tenant, and reads what the order
path reads next (a live account's broker session and app) in the same round trip."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.account_locks import account_lock
from accounts.models import TradingAccount
from brokers.tests.factories import linked_kite_account, order

pytestmark = pytest.mark.django_db


def paper(user) -> TradingAccount:
    return TradingAccount.objects.get(user=user, is_primary=True)


def locked(**arguments) -> tuple[TradingAccount, list[str]]:
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        account = account_lock(**arguments)
    return account, [query["sql"] for query in queries.captured_queries]


class TestAPaperAccount:
    def test_is_locked_with_its_user_and_tenant_in_one_query_without_the_broker_tables(self, alice):
        account, queries = locked(account_id=paper(alice).pk, live=False)

        assert len(queries) == 1
        assert "FOR UPDATE OF" in queries[0]
        assert "brokers_brokerconnection" not in queries[0] and "brokers_brokerapp" not in queries[0]
        assert (account.user.email, account.user.tenant.slug) == ("alice@acme.test", alice.tenant.slug)

    def test_has_no_broker_session_to_read_later(self, alice, django_assert_num_queries):
        account, _ = locked(account_id=paper(alice).pk, live=False)

        with django_assert_num_queries(0):
            assert account.connection is None
            assert account.user.tenant.trading_enabled in (True, False)


class TestALiveAccount:
    def test_comes_with_its_broker_session_and_app_in_the_same_query(self, alice, django_assert_num_queries):
        live = linked_kite_account(alice)

        account, queries = locked(account_id=live.pk)

        assert len(queries) == 1 and "brokers_brokerapp" in queries[0]
        with django_assert_num_queries(0):
            assert account.connection.access_token and account.connection.app.api_key
            assert account.connection.app.tenant is account.user.tenant  # the locked row, not a second copy

    def test_asked_for_as_paper_still_reads_its_session_when_it_is_needed(self, alice):
        # A caller that is wrong about the mode pays a query, never a wrong answer.
        live = linked_kite_account(alice)

        account, _ = locked(account_id=live.pk, live=False)

        assert account.connection.pk == live.connection_id


class TestTheIdempotencyKey:
    def test_a_new_key_is_unused_and_costs_no_query_of_its_own(self, alice):
        account, queries = locked(account_id=paper(alice).pk, idempotency_key="new-key", live=False)

        assert account.key_used is False and len(queries) == 1

    def test_a_key_an_order_of_the_account_holds_is_used(self, alice):
        account = paper(alice)
        order(account, "OPEN", 1, idempotency_key="held-key")

        assert locked(account_id=account.pk, idempotency_key="held-key", live=False)[0].key_used is True

    def test_a_hostile_key_is_a_parameter_not_sql(self, alice):
        account, _ = locked(account_id=paper(alice).pk, idempotency_key="x' OR '1'='1", live=False)

        assert account.key_used is False
