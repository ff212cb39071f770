"""Kite's callback redirects the browser whatever its Accept header says: a redirect is never a 406."""

from urllib.parse import urlsplit

import pytest

from brokers.tests.sandbox_fixtures import log_in_at_kite, spa_params, start
from conftest import client_for
from identity.models import User
from thor.tests.browser_pages import assert_login_link_page

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.fixture
def user_client(tenant):
    response = client_for().post(
        "/api/auth/register/",
        {"email": "dev@acme.test", "password": "a-Strong-passphrase-42", "tenant": "acme"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return client_for(User.objects.get(email="dev@acme.test"))


def callback(location: str, accept: str):
    parts = urlsplit(location)
    return client_for().get(f"{parts.path}?{parts.query}", HTTP_ACCEPT=accept)


@pytest.mark.parametrize("accept", ["text/html", BROWSER, "application/json", "image/png"])
def test_a_completed_login_redirects_to_the_spa(sandbox, user_client, accept):
    location = log_in_at_kite(start(user_client))

    response = callback(location, accept)

    assert response.status_code == 302
    assert spa_params(response)["status"] == "success"


@pytest.mark.parametrize("accept", ["text/html", BROWSER, "application/json", "image/png"])
def test_a_bad_state_is_the_page_a_person_reads_not_a_406(accept):
    response = client_for().get(
        "/api/auth/broker/callback?request_token=abc&action=login&status=success&state=forged", HTTP_ACCEPT=accept
    )

    assert_login_link_page(response, "forged")
