"""The session, Django's login and the messages run for the admin and nowhere under /api/.

The API authenticates with Bearer JWTs in DRF; the admin needs all three. Each middleware is driven
as Django drives it, sync (WSGI) and async (ASGI), with a view that reports what it was given.
"""

import asyncio

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from identity.tests.factories import PASSWORD
from thor.middleware import AdminAuthenticationMiddleware, AdminMessageMiddleware, AdminSessionMiddleware

pytestmark = pytest.mark.django_db


def what_the_view_saw(request):
    return HttpResponse(",".join(name for name in ("session", "user", "_messages") if hasattr(request, name)))


async def what_the_async_view_saw(request):
    return what_the_view_saw(request)


def chain(view):
    return AdminSessionMiddleware(AdminAuthenticationMiddleware(AdminMessageMiddleware(view)))


@pytest.mark.parametrize("path", ["/api/accounts/primary/positions", "/api/", "/api/health/"])
def test_api_requests_go_straight_past(path):
    assert chain(what_the_view_saw)(RequestFactory().get(path)).content == b""


@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/metrics", "/apix", "/"])
def test_everything_else_gets_session_user_and_messages(path):
    assert chain(what_the_view_saw)(RequestFactory().get(path)).content == b"session,user,_messages"


def test_under_asgi_too():
    middleware = chain(what_the_async_view_saw)

    api = asyncio.run(middleware(RequestFactory().get("/api/accounts")))
    admin = asyncio.run(middleware(RequestFactory().get("/admin/")))

    assert (api.content, admin.content) == (b"", b"session,user,_messages")


def test_the_admin_login_still_works(client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()

    page = client.get("/admin/login/")
    logged_in = client.post("/admin/login/?next=/admin/", {"username": alice.email, "password": PASSWORD})

    assert page.status_code == 200 and "csrftoken" in page.cookies
    assert logged_in.status_code == 302 and client.get("/admin/").status_code == 200


def test_an_api_answer_sets_no_session_cookie(alice_client):
    response = alice_client.get("/api/auth/me/")

    assert response.status_code == 200 and "sessionid" not in response.cookies
    assert "Cookie" not in response.get("Vary", "")
