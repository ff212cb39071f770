"""An operator logs in a tenant's market-data session from the admin (or the command line), end to end over real
HTTP against the broker sandbox: the admin's button -> the broker's login page -> the same callback a user's link
uses -> back to the app's admin page with a message, the tenant's market-data connection active with the new
token and the quote service using it. Plus the hostile ways in: used, expired, forged or foreign states, another
tenant's staff, non-staff, and redirect targets off the admin."""

import time
from io import StringIO

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command

from brokers import oauth_state
from brokers.models import BrokerApp, BrokerConnection
from brokers.services import CallbackFailed, kite_callback_complete, schwab_callback_complete
from brokers.services.market_data_login import market_data_login_complete, market_data_login_start
from brokers.tests.market_data_login_steps import (
    back_at_admin,
    browser_of,
    kite_callback_in,
    login_url,
    page,
    session_of,
    staff_of,
    start,
    state_of,
)
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, CALLBACK, follow, log_in_at_kite, market_data_link
from brokers.tests.schwab_link_steps import approve, schwab_market_data_link
from conftest import client_for
from identity.models import User
from market.quotes import quote_service
from thor.errors import ApplicationError
from thor.tests.browser_pages import assert_login_link_page

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


class TestKite:
    def test_the_operator_logs_the_session_in_again_and_quotes_use_the_new_token(self, sandbox, kite_app, operator):
        old = market_data_link(sandbox, kite_app.tenant)
        sandbox.reset()  # the morning: the sandbox, like Kite at 06:00 IST, no longer knows the session
        browser = browser_of(operator)

        url = login_url(browser, kite_app)
        assert url.startswith(f"{sandbox.url}/connect/login?v=3&api_key={API_KEY}")
        said = back_at_admin(browser, kite_callback_in(browser, log_in_at_kite(url)), kite_app)

        assert said == ["The market-data session is logged in."]
        connection = session_of(kite_app)
        assert connection.pk == old.pk and connection.status == "active"
        assert connection.access_token and connection.access_token != old.access_token
        assert "NSE:INFY" in quote_service(tenant=kite_app.tenant).quotes(["NSE:INFY"])
        assert not BrokerConnection.objects.filter(user=operator).exists()  # nobody's trading account

    def test_the_admin_shows_the_sessions_status_and_expiry_never_its_token(self, sandbox, kite_app, operator):
        browser = browser_of(operator)
        assert "never logged in" in browser.get(page(kite_app)).content.decode()
        back_at_admin(browser, kite_callback_in(browser, log_in_at_kite(login_url(browser, kite_app))), kite_app)
        connection = session_of(kite_app)
        expiry = f"Active, token expires {connection.access_expires_at:%Y-%m-%d %H:%M} UTC"

        for html in (browser.get(page(kite_app)), browser.get("/admin/brokers/brokerapp/")):
            text = html.content.decode()
            assert expiry in text and connection.access_token not in text and API_SECRET not in text
        assert "Log in the market-data session" in browser.get(page(kite_app)).content.decode()

    def test_the_list_action_starts_the_same_login(self, sandbox, kite_app, operator):
        browser = browser_of(operator)
        response = browser.post(
            "/admin/brokers/brokerapp/", {"action": "log_in_market_data", "_selected_action": [kite_app.pk]}
        )

        assert response.status_code == 302
        back_at_admin(browser, kite_callback_in(browser, log_in_at_kite(response["Location"])), kite_app)
        assert session_of(kite_app).status == "active"

    def test_a_superuser_of_any_tenant_may(self, sandbox, kite_app, other_tenant):
        root = User.objects.create_superuser("root@globex.test", "an-ops-passphrase-1", tenant=other_tenant)
        browser = browser_of(root)

        said = back_at_admin(browser, kite_callback_in(browser, log_in_at_kite(login_url(browser, kite_app))), kite_app)

        assert said == ["The market-data session is logged in."] and session_of(kite_app).status == "active"


class TestSchwab:
    def test_the_operator_logs_the_session_in_and_us_quotes_use_it(self, schwab_sandbox, schwab_app, operator):
        old = schwab_market_data_link(schwab_sandbox, schwab_app.tenant)
        browser = browser_of(operator)

        url = login_url(browser, schwab_app)
        assert url.startswith(f"{schwab_sandbox.url}/v1/oauth/authorize?")
        # The app's redirect URL is the SPA page; the operator's browser (no Bearer) hands the query to the backend.
        response = browser.get("/api/schwab/oauth/callback/", approve(url))
        said = back_at_admin(browser, response, schwab_app)

        assert said == ["The market-data session is logged in."]
        connection = session_of(schwab_app)
        assert connection.pk == old.pk and connection.status == "active" and connection.access_token != old.access_token
        assert "NASDAQ:AAPL" in quote_service(tenant=schwab_app.tenant).quotes(["NASDAQ:AAPL"])

    def test_a_relay_with_a_bearer_never_finishes_a_market_data_login(self, schwab_sandbox, schwab_app, operator):
        response = client_for(operator).get(
            "/api/schwab/oauth/callback/", approve(login_url(browser_of(operator), schwab_app))
        )

        assert response.status_code == 400 and response.json()["code"] == "state_invalid"
        assert not BrokerConnection.objects.filter(app=schwab_app).exists()

    def test_a_market_data_state_never_links_a_users_schwab_account(self, schwab_sandbox, schwab_app, operator):
        state = oauth_state.consume(state_of(login_url(browser_of(operator), schwab_app)))

        with pytest.raises(CallbackFailed, match="state_invalid"):
            schwab_callback_complete(state=state, code="any", by_its_user=False)


class TestHostile:
    def test_a_replayed_callback_links_nothing_more_and_says_so(self, sandbox, kite_app, operator):
        browser = browser_of(operator)
        location = log_in_at_kite(login_url(browser, kite_app))
        back_at_admin(browser, kite_callback_in(browser, location), kite_app)
        token = session_of(kite_app).access_token

        said = back_at_admin(browser, kite_callback_in(browser, location), kite_app)

        assert said == ["That login link was already used; start again."]
        assert session_of(kite_app).access_token == token

    def test_an_expired_state_links_nothing(self, sandbox, kite_app, operator):
        browser = browser_of(operator)
        location = log_in_at_kite(login_url(browser, kite_app))

        with time_machine.travel(time.time() + 601, tick=False):
            response = kite_callback_in(browser, location)

        assert back_at_admin(browser, response, kite_app) == [
            "The login link expired before the broker sent it back; start again."
        ]
        assert not BrokerConnection.objects.filter(app=kite_app).exists()

    def test_a_users_link_state_never_links_the_market_data_session(self, sandbox, kite_app, alice):
        started = client_for(alice).post("/api/brokers/kite/connect", {"frontend_url": "http://localhost:5173"})
        link_state = oauth_state.consume(state_of(started.json()["oauth_url"]))

        with pytest.raises(CallbackFailed, match="state_invalid"):
            market_data_login_complete(
                state=link_state, params={"status": "success", "request_token": "t"}, signed_in=alice
            )
        # And the user's own flow still links the user, not the session.
        follow(
            log_in_at_kite(
                client_for(alice)
                .post("/api/brokers/kite/connect", {"frontend_url": "http://localhost:5173"})
                .json()["oauth_url"]
            )
        )
        assert BrokerConnection.objects.get(app=kite_app, status="active").user == alice

    def test_a_market_data_state_never_links_the_operators_account(self, sandbox, kite_app, operator):
        state = oauth_state.consume(state_of(login_url(browser_of(operator), kite_app)))

        with pytest.raises(CallbackFailed, match="state_invalid"):
            kite_callback_complete(state=state, params={"status": "success", "request_token": "t"})

    def test_another_tenants_staff_cannot_start_or_read_it(self, sandbox, kite_app, other_tenant):
        stranger = browser_of(staff_of(other_tenant, "ops@globex.test"))

        assert start(stranger, kite_app).status_code == 403
        action = stranger.post(
            "/admin/brokers/brokerapp/", {"action": "log_in_market_data", "_selected_action": [kite_app.pk]}
        )
        assert action.status_code == 403
        assert stranger.get(f"/admin/brokers/brokerapp/{kite_app.pk}/market-data-login/done/").status_code == 403

    def test_an_operator_who_lost_the_right_before_the_callback_links_nothing(self, sandbox, kite_app, operator):
        browser = browser_of(operator)
        location = log_in_at_kite(login_url(browser, kite_app))
        User.objects.filter(pk=operator.pk).update(is_staff=False)

        response = kite_callback_in(browser, location)

        assert response.status_code == 302 and not BrokerConnection.objects.filter(app=kite_app).exists()

    @pytest.mark.parametrize("who", ["anonymous", "non-staff"])
    def test_non_staff_are_sent_to_the_admin_login(self, kite_app, alice, who):
        browser = browser_of(None if who == "anonymous" else alice)

        response = start(browser, kite_app)

        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")

    def test_the_start_is_a_post(self, kite_app, operator):
        assert browser_of(operator).get(f"/admin/brokers/brokerapp/{kite_app.pk}/market-data-login/").status_code == 405

    @pytest.mark.parametrize(
        "target",
        ["https://evil.test/admin/", "//evil.test/admin/", "/api/auth/me/", "/\\evil.test", "javascript:alert(1)"],
    )
    def test_a_return_target_off_the_admin_is_refused_before_the_broker(self, kite_app, operator, target):
        browser = browser_of(operator)

        response = start(browser, kite_app, next=target)

        assert response.status_code == 302 and response["Location"] == page(kite_app)
        assert [str(m) for m in get_messages(response.wsgi_request)] == ["The page to return to is not an admin page."]

    @pytest.mark.parametrize("result", ["", "forged", "x" * 3000])
    def test_a_forged_result_says_nothing_worked(self, kite_app, operator, result):
        browser = browser_of(operator)

        landed = browser.get(f"/admin/brokers/brokerapp/{kite_app.pk}/market-data-login/done/", {"result": result})

        assert landed["Location"] == page(kite_app)
        assert [str(m) for m in get_messages(landed.wsgi_request)] == ["That login result is not valid here."]

    def test_a_forged_market_data_state_is_the_login_link_page(self, sandbox, kite_app, operator):
        genuine = state_of(login_url(browser_of(operator), kite_app))
        forged = genuine[:-3] + ("AAA" if not genuine.endswith("AAA") else "BBB")

        response = follow(f"{CALLBACK}?request_token=abc&status=success&state={forged}")

        assert_login_link_page(response, "abc")
        assert not BrokerConnection.objects.filter(app=kite_app).exists()

    def test_a_users_own_app_has_no_market_data_session(self, kite_app, operator, alice):
        own = BrokerApp.objects.create(tenant=kite_app.tenant, owner=alice, kind="kite", api_key="own", api_secret="s")

        with pytest.raises(ApplicationError) as refused:
            market_data_login_start(app=own, operator=operator)
        assert refused.value.code == "not_shared_app"


class TestCommand:
    def test_prints_the_login_url_and_its_callback_and_the_url_completes_the_login(self, sandbox, kite_app, operator):
        out = StringIO()
        call_command("market_data_login", tenant="acme", broker="kite", stdout=out)

        url = next(line for line in out.getvalue().splitlines() if line.startswith(sandbox.url))
        assert "/api/auth/broker/callback" in out.getvalue() and API_SECRET not in out.getvalue()
        # Opened in a browser with no admin session: nobody to bind the login to, the shell is the authority.
        back_at_admin(browser_of(operator), follow(log_in_at_kite(url)), kite_app)
        assert session_of(kite_app).status == "active"

    def test_schwab_says_which_callback_finishes_it(self, schwab_sandbox, schwab_app):
        out = StringIO()
        call_command("market_data_login", tenant="acme", broker="schwab", stdout=out)

        assert "/api/schwab/oauth/callback/" in out.getvalue() and "schwab-test-secret" not in out.getvalue()

    @pytest.mark.parametrize("tenant_slug", ["nobody", "globex"])
    def test_refuses_an_unknown_tenant_or_one_without_the_app(self, kite_app, other_tenant, tenant_slug):
        with pytest.raises(CommandError):
            call_command("market_data_login", tenant=tenant_slug, broker="kite", stdout=StringIO())
