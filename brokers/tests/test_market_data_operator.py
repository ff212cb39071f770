"""An operator's market-data login is finished only by that operator's own admin session, in the browser that
started it (brokers.services.market_data_login): the link flows park a user's link until that user confirms it,
and this login links a session the whole tenant's market data goes through.

The threat: the broker login URL an operator started (its state naming that operator) is forwarded, leaked or
opened in another browser, and someone logs in at the broker there, with their own broker account, and their
browser is sent to the callback. That browser has no admin session of the operator, so nothing is linked: the
callback answers a page saying so (403), the broker's token is never exchanged, the state is spent (so the
operator's own browser, coming later with it, hears it was used), and one log line names the app and the ids,
never a token, a state or a session key. The management command's login (no operator) finishes anywhere.
End to end over real HTTP against the broker sandbox."""

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command

from brokers import oauth_state
from brokers.models import BrokerConnection
from brokers.services import CallbackFailed
from brokers.services.market_data_login import NOT_THE_OPERATOR, market_data_login_complete
from brokers.tests.market_data_login_steps import (
    back_at_admin,
    browser_of,
    kite_callback_in,
    login_url,
    session_of,
    staff_of,
    state_of,
)
from brokers.tests.sandbox_fixtures import log_in_at_kite, sandbox_calls
from brokers.tests.schwab_link_steps import approve
from conftest import client_for
from identity.models import User
from thor.tests.browser_pages import opener_kept

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

USED = ["That login link was already used; start again."]
KITE_EXCHANGE = "POST /session/token"


def refused(response, *never_shown: str) -> None:
    """The page a browser that is not the operator's gets: HTML a person reads, nothing echoed back."""
    assert response.status_code == 403 and response["Content-Type"].startswith("text/html")
    assert "Location" not in response and response["Cache-Control"] == "no-store" and opener_kept(response)
    text = response.content.decode()
    assert "signed in to the admin as the operator who started it" in text and "Nothing was linked" in text
    for value in never_shown:
        assert value not in text, value


def secrets_of(location: str, browser) -> list[str]:
    """What must never reach a page or a log line: the request token, the state, the browser's session key."""
    query = parse_qs(urlsplit(location).query)
    cookie = browser.cookies.get(settings.SESSION_COOKIE_NAME)
    return [query["request_token"][0], query["state"][0], *([cookie.value] if cookie and cookie.value else [])]


@pytest.fixture
def colleague(tenant):
    """Another operator of the same tenant, with every right to log the session in."""
    return staff_of(tenant, "ops2@acme.test")


def someone(who: str, tenant, colleague) -> User | None:
    if who == "nobody":
        return None
    if who == "a colleague":
        return colleague
    if who == "a superuser":
        return User.objects.create_superuser("root@acme.test", "an-ops-passphrase-1", tenant=tenant)
    return User.objects.create_user("carol@acme.test", password="a-pass-phrase-1", tenant=tenant)


class TestKite:
    @pytest.mark.parametrize("who", ["nobody", "a colleague", "a superuser", "a customer"])
    def test_a_callback_in_another_browser_links_nothing_and_spends_the_state(
        self, sandbox, kite_app, operator, colleague, who, caplog
    ):
        browser = browser_of(operator)
        location = log_in_at_kite(login_url(browser, kite_app), user_id="CD5678")  # someone else's Kite account
        elsewhere = browser_of(someone(who, kite_app.tenant, colleague))

        with caplog.at_level(logging.WARNING, logger="thor.brokers"):
            response = kite_callback_in(elsewhere, location)

        never_shown = secrets_of(location, elsewhere)
        refused(response, *never_shown)
        assert not BrokerConnection.objects.filter(app=kite_app).exists()
        assert sandbox_calls(sandbox, KITE_EXCHANGE) == 0  # the broker's token was never exchanged
        line = next(record.getMessage() for record in caplog.records if "refused" in record.getMessage())
        assert f"app {kite_app.pk}" in line and f"operator {operator.pk}" in line
        for value in [*never_shown, *secrets_of(location, browser)]:
            assert value not in caplog.text
        # Spent: the operator's own browser, coming with it later, is told so and links nothing either.
        assert back_at_admin(browser, kite_callback_in(browser, location), kite_app) == USED
        assert not BrokerConnection.objects.filter(app=kite_app).exists()

    def test_the_operators_own_browser_links(self, sandbox, kite_app, operator):
        browser = browser_of(operator)

        response = kite_callback_in(browser, log_in_at_kite(login_url(browser, kite_app)))

        assert back_at_admin(browser, response, kite_app) == ["The market-data session is logged in."]
        assert session_of(kite_app).status == "active"

    def test_the_operators_bearer_is_not_the_admin_session(self, sandbox, kite_app, operator):
        location = log_in_at_kite(login_url(browser_of(operator), kite_app))

        refused(kite_callback_in(client_for(operator), location))
        assert not BrokerConnection.objects.filter(app=kite_app).exists()

    def test_an_operator_who_signed_out_meanwhile_links_nothing(self, sandbox, kite_app, operator):
        browser = browser_of(operator)
        location = log_in_at_kite(login_url(browser, kite_app))
        browser.logout()

        refused(kite_callback_in(browser, location))
        assert not BrokerConnection.objects.filter(app=kite_app).exists()

    def test_a_session_from_before_the_operators_password_changed_is_not_theirs(self, sandbox, kite_app, operator):
        browser = browser_of(operator)
        location = log_in_at_kite(login_url(browser, kite_app))
        operator.set_password("a-new-ops-passphrase-2")
        operator.save()

        response = kite_callback_in(browser, location)

        refused(response)
        assert not BrokerConnection.objects.filter(app=kite_app).exists()
        # Flushed, as the admin would: the browser is told to drop the cookie.
        assert response.cookies[settings.SESSION_COOKIE_NAME].value == ""

    def test_a_deactivated_operator_links_nothing(self, sandbox, kite_app, operator):
        browser = browser_of(operator)
        location = log_in_at_kite(login_url(browser, kite_app))
        User.objects.filter(pk=operator.pk).update(is_active=False)

        refused(kite_callback_in(browser, location))
        assert not BrokerConnection.objects.filter(app=kite_app).exists()

    @pytest.mark.parametrize(
        "cookie",
        ["", "x", "x" * 5000, "../../../etc/passwd", "' OR 1=1 --", "%00", "sessionid"],
        ids=["empty", "short", "long", "path", "sql", "nul", "its-name"],
    )
    def test_a_made_up_session_cookie_is_nobody(self, sandbox, kite_app, operator, cookie):
        location = log_in_at_kite(login_url(browser_of(operator), kite_app))
        forger = browser_of(None)
        forger.cookies[settings.SESSION_COOKIE_NAME] = cookie

        refused(kite_callback_in(forger, location))
        assert not BrokerConnection.objects.filter(app=kite_app).exists()

    @pytest.mark.parametrize("session_hash", [None, "", "0" * 64])
    def test_a_session_naming_the_operator_without_their_hash_is_nobody(
        self, sandbox, kite_app, operator, session_hash
    ):
        location = log_in_at_kite(login_url(browser_of(operator), kite_app))
        forged = SessionStore()
        forged[SESSION_KEY] = str(operator.pk)
        forged[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        if session_hash is not None:
            forged[HASH_SESSION_KEY] = session_hash
        forged.create()
        forger = browser_of(None)
        forger.cookies[settings.SESSION_COOKIE_NAME] = forged.session_key

        refused(kite_callback_in(forger, location))
        assert not BrokerConnection.objects.filter(app=kite_app).exists()


class TestSchwab:
    @pytest.mark.parametrize("who", ["nobody", "a colleague"])
    def test_a_callback_in_another_browser_links_nothing_and_spends_the_state(
        self, schwab_sandbox, schwab_app, operator, colleague, who
    ):
        browser = browser_of(operator)
        query = approve(login_url(browser, schwab_app))

        response = browser_of(someone(who, schwab_app.tenant, colleague)).get("/api/schwab/oauth/callback/", query)

        refused(response, query["code"], query["state"])
        assert not BrokerConnection.objects.filter(app=schwab_app).exists()
        assert back_at_admin(browser, browser.get("/api/schwab/oauth/callback/", query), schwab_app) == USED

    def test_the_operators_own_browser_links(self, schwab_sandbox, schwab_app, operator):
        browser = browser_of(operator)

        response = browser.get("/api/schwab/oauth/callback/", approve(login_url(browser, schwab_app)))

        assert back_at_admin(browser, response, schwab_app) == ["The market-data session is logged in."]
        assert session_of(schwab_app).status == "active"


class TestTheCommandLine:
    @pytest.mark.parametrize("who", ["nobody", "a colleague", "a customer"])
    def test_its_login_has_no_operator_and_finishes_in_any_browser(self, sandbox, kite_app, colleague, who, capsys):
        call_command("market_data_login", tenant="acme", broker="kite")
        url = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(sandbox.url))

        response = kite_callback_in(browser_of(someone(who, kite_app.tenant, colleague)), log_in_at_kite(url))

        assert response.status_code == 302 and "/market-data-login/done/" in response["Location"]
        assert session_of(kite_app).status == "active"


class TestTheService:
    def test_an_operators_state_is_refused_for_anyone_else_before_the_broker(self, sandbox, kite_app, operator):
        colleague = staff_of(kite_app.tenant, "ops2@acme.test")
        for signed_in in (None, colleague):
            state = oauth_state.consume(state_of(login_url(browser_of(operator), kite_app)))

            with pytest.raises(CallbackFailed, match=NOT_THE_OPERATOR):
                market_data_login_complete(
                    state=state, params={"status": "success", "request_token": "t"}, signed_in=signed_in
                )
        assert sandbox_calls(sandbox, KITE_EXCHANGE) == 0
