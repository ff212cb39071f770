"""An operator logs a tenant's market-data session in again as another broker user (another Kite user id, another
Schwab login): the session that login linked is the one market data uses from then on. The app's other sessions
of the tenant's market-data user end (expired, tokens wiped, the rows kept), announced once committed so nothing
keeps serving a cached copy; a relogin as the same broker user still renews the same row. End to end over real
HTTP against the broker sandbox, through the admin's button and the app's callback."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from brokers.models import BrokerConnection, BrokerKind
from brokers.selectors import market_data_sessions
from brokers.services.market_data import market_data_user
from brokers.signals import connection_ended
from brokers.tests.market_data_login_steps import back_at_admin, browser_of, kite_callback_in, login_url, state_of
from brokers.tests.sandbox_fixtures import SPA, follow, log_in_at_kite, market_data_link, spa_params
from brokers.tests.schwab_link_steps import approve, connection_for_grant, sandbox_grants, schwab_app_for
from conftest import client_for
from market.selectors import market_data_connection

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

Status = BrokerConnection.Status
LOGGED_IN = ["The market-data session is logged in."]


@pytest.fixture
def ended() -> Iterator[list[int]]:
    """The connection ids announced as ended (brokers.signals.connection_ended), once their change committed."""
    heard: list[int] = []

    def hear(sender, connection_ids, **kwargs) -> None:
        heard.extend(connection_ids)

    connection_ended.connect(hear)
    yield heard
    connection_ended.disconnect(hear)


def kite_relogin(browser, app, user_id: str, capture) -> list[str]:
    """The operator's Kite login of the app's market-data session as `user_id`, committed."""
    location = log_in_at_kite(login_url(browser, app), user_id=user_id)
    with capture(execute=True):
        response = kite_callback_in(browser, location)
    return back_at_admin(browser, response, app)


def used_a_moment_ago(connection: BrokerConnection) -> None:
    """Quotes went through it a moment ago: without the fix, the most recently synced session was preferred."""
    BrokerConnection.objects.filter(pk=connection.pk).update(last_sync_at=timezone.now() - timedelta(seconds=1))


def assert_ended(connection: BrokerConnection) -> None:
    connection.refresh_from_db()  # still there: the row is the session's record
    assert connection.status == Status.EXPIRED and connection.last_error == "superseded"
    assert connection.access_token == "" and connection.refresh_token == ""


class TestAnotherBrokerUser:
    def test_the_new_kite_user_serves_and_the_old_session_ends(
        self, sandbox, kite_app, operator, ended, django_capture_on_commit_callbacks
    ):
        browser = browser_of(operator)
        assert kite_relogin(browser, kite_app, "AB1234", django_capture_on_commit_callbacks) == LOGGED_IN
        old = BrokerConnection.objects.get(app=kite_app, broker_user_id="AB1234")
        used_a_moment_ago(old)

        assert kite_relogin(browser, kite_app, "CD5678", django_capture_on_commit_callbacks) == LOGGED_IN

        new = BrokerConnection.objects.get(app=kite_app, broker_user_id="CD5678")
        assert new.status == Status.ACTIVE and new.user == old.user == market_data_user(kite_app.tenant)
        assert market_data_connection(tenant=kite_app.tenant) == new
        assert_ended(old)
        assert ended == [old.pk]
        # The admin shows the session in use, not the row that ended after it was linked.
        assert market_data_sessions([kite_app])[kite_app.pk] == new

    def test_the_old_kite_user_logging_in_again_takes_its_own_row_back(
        self, sandbox, kite_app, operator, ended, django_capture_on_commit_callbacks
    ):
        browser = browser_of(operator)
        kite_relogin(browser, kite_app, "AB1234", django_capture_on_commit_callbacks)
        kite_relogin(browser, kite_app, "CD5678", django_capture_on_commit_callbacks)
        first, second = BrokerConnection.objects.filter(app=kite_app).order_by("pk")

        kite_relogin(browser, kite_app, "AB1234", django_capture_on_commit_callbacks)

        assert BrokerConnection.objects.filter(app=kite_app).count() == 2
        assert market_data_connection(tenant=kite_app.tenant) == first
        first.refresh_from_db()
        assert first.status == Status.ACTIVE and first.access_token
        assert_ended(second)
        assert ended == [first.pk, second.pk]

    def test_the_new_schwab_login_serves_and_the_old_one_ends(
        self, schwab_sandbox, tenant, operator, ended, django_capture_on_commit_callbacks
    ):
        app = schwab_app_for(tenant)
        # Another Schwab login (the sandbox's login page knows one user; this one it issued without a page).
        old = connection_for_grant(market_data_user(tenant), app, sandbox_grants(schwab_sandbox, app, 1)[0])
        used_a_moment_ago(old)
        browser = browser_of(operator)

        with django_capture_on_commit_callbacks(execute=True):
            response = browser.get("/api/schwab/oauth/callback/", approve(login_url(browser, app)))

        assert back_at_admin(browser, response, app) == LOGGED_IN
        new = BrokerConnection.objects.exclude(pk=old.pk).get(app=app)
        assert new.status == Status.ACTIVE and new.broker_user_id != old.broker_user_id
        assert market_data_connection(tenant=tenant, kind=BrokerKind.SCHWAB) == new
        assert_ended(old)
        assert ended == [old.pk]


class TestTheSameBrokerUser:
    def test_a_kite_relogin_renews_the_same_row_and_ends_nothing(
        self, sandbox, kite_app, operator, ended, django_capture_on_commit_callbacks
    ):
        old = market_data_link(sandbox, kite_app.tenant, user_id="AB1234")
        sandbox.reset()  # the morning: Kite no longer knows the session

        assert kite_relogin(browser_of(operator), kite_app, "AB1234", django_capture_on_commit_callbacks) == LOGGED_IN

        renewed = BrokerConnection.objects.get(app=kite_app)
        assert renewed.pk == old.pk and renewed.status == Status.ACTIVE and renewed.access_token != old.access_token
        assert ended == []


class TestOnlyThatAppsMarketDataSessionsEnd:
    def test_customers_other_apps_and_other_tenants_keep_theirs(
        self, sandbox, schwab_sandbox, kite_app, operator, alice, other_tenant, django_capture_on_commit_callbacks
    ):
        # A customer's session on the same shared app, as CD5678 too.
        started = client_for(alice).post("/api/brokers/kite/connect", {"frontend_url": SPA}).json()["oauth_url"]
        assert spa_params(follow(log_in_at_kite(started, user_id="CD5678")))["status"] == "success"
        customer = BrokerConnection.objects.get(user=alice, app=kite_app)
        # The tenant's market-data session on its shared Schwab app, and another tenant's on its Kite app.
        schwab_app = schwab_app_for(kite_app.tenant)
        schwab = connection_for_grant(
            market_data_user(kite_app.tenant), schwab_app, sandbox_grants(schwab_sandbox, schwab_app, 1)[0]
        )
        elsewhere = market_data_link(sandbox, other_tenant, user_id="AB1234")
        browser = browser_of(operator)
        kite_relogin(browser, kite_app, "AB1234", django_capture_on_commit_callbacks)

        kite_relogin(browser, kite_app, "CD5678", django_capture_on_commit_callbacks)

        for kept in (customer, schwab, elsewhere):
            kept.refresh_from_db()
            assert kept.status == Status.ACTIVE and kept.access_token
        assert market_data_connection(tenant=other_tenant) == elsewhere
        assert market_data_connection(tenant=kite_app.tenant, kind=BrokerKind.SCHWAB) == schwab

    @pytest.mark.parametrize(
        "answer",
        [{"status": "cancelled"}, {"status": "success", "request_token": "not-one-kite-issued"}],
        ids=["declined-at-kite", "token-kite-refuses"],
    )
    def test_a_relogin_that_fails_ends_nothing(
        self, sandbox, kite_app, operator, answer, django_capture_on_commit_callbacks
    ):
        browser = browser_of(operator)
        kite_relogin(browser, kite_app, "AB1234", django_capture_on_commit_callbacks)
        old = BrokerConnection.objects.get(app=kite_app)
        # Kite's answer to the operator's next login, as CD5678, is not a session.
        state = state_of(login_url(browser, kite_app))

        with django_capture_on_commit_callbacks(execute=True):
            response = browser.get("/api/auth/broker/callback", {**answer, "state": state})

        assert back_at_admin(browser, response, kite_app) != LOGGED_IN
        old.refresh_from_db()
        assert old.status == Status.ACTIVE and market_data_connection(tenant=kite_app.tenant) == old
        assert BrokerConnection.objects.filter(app=kite_app).count() == 1
