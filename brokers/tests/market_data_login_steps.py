"""An operator's steps through a market-data login (brokers.services.market_data_login) in the tests: a browser
signed in to the admin, its button, the broker's login at the sandbox, the callback and the admin page it ends on."""

from urllib.parse import parse_qs, urlsplit

from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client

from brokers.models import BrokerConnection
from brokers.services.market_data import market_data_email
from brokers.tests.sandbox_fixtures import CALLBACK
from identity.models import User


def staff_of(tenant, email: str) -> User:
    """Staff of `tenant` who may change broker apps (not a superuser)."""
    user = User.objects.create_user(email, password="an-ops-passphrase-1", tenant=tenant, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_brokerapp"))
    return User.objects.get(pk=user.pk)  # the permission cache starts empty


def browser_of(user: User | None) -> Client:
    """A browser signed in to the admin as `user` (None: signed in as nobody)."""
    browser = Client()
    if user is not None:
        browser.force_login(user)
    return browser


def page(app) -> str:
    return f"/admin/brokers/brokerapp/{app.pk}/change/"


def start(browser: Client, app, **form):
    return browser.post(f"/admin/brokers/brokerapp/{app.pk}/market-data-login/", form)


def login_url(browser: Client, app) -> str:
    response = start(browser, app)
    assert response.status_code == 302, response.content
    return response["Location"]


def state_of(url: str) -> str:
    query = parse_qs(urlsplit(url).query)
    if "redirect_params" in query:  # Kite
        return parse_qs(query["redirect_params"][0])["state"][0]
    return query["state"][0]


def kite_callback_in(browser: Client, location: str):
    """Kite's redirect to the callback, opened in `browser` (with whatever admin session it holds)."""
    assert location.startswith(CALLBACK)
    parts = urlsplit(location)
    return browser.get(f"{parts.path}?{parts.query}")


def back_at_admin(browser: Client, response, app) -> list[str]:
    """The callback's redirect, opened by the operator's browser: the messages it leaves on the app's page."""
    assert response.status_code == 302 and response["Location"].startswith(
        f"/admin/brokers/brokerapp/{app.pk}/market-data-login/done/?result="
    )
    assert response["Cache-Control"] == "no-store"
    landed = browser.get(response["Location"])
    assert landed.status_code == 302 and landed["Location"] == page(app)
    said = [str(message) for message in get_messages(landed.wsgi_request)]
    assert browser.get(landed["Location"]).status_code == 200  # the page shows (and so uses up) the messages
    return said


def session_of(app) -> BrokerConnection:
    """The app's market-data connection (its tenant's market-data user has exactly one on it)."""
    return BrokerConnection.objects.get(app=app, user__email=market_data_email(app.tenant))
