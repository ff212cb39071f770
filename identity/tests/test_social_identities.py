"""The caller's linked identities (list, unlink with the last-login-method rule) and the admin's view of them."""

import pytest
from django.test import Client

from conftest import client_for
from identity.models import SocialApp, SocialIdentity, User
from identity.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def social_user(tenant, email="social@acme.test", providers=("google",)):
    user = User.objects.create_user(email, None, tenant=tenant)
    for number, provider in enumerate(providers):
        SocialIdentity.objects.create(user=user, provider=provider, subject=f"{provider}-{number}", email=email)
    return user


def test_lists_only_the_callers_identities(tenant, alice, bob):
    SocialIdentity.objects.create(user=alice, provider="google", subject="g-alice", email="alice@acme.test")
    SocialIdentity.objects.create(user=bob, provider="google", subject="g-bob", email="bob@acme.test")

    response = client_for(alice).get("/api/auth/identities/")

    assert response.status_code == 200
    assert [(item["provider"], item["subject"]) for item in response.json()] == [("google", "g-alice")]


def test_listing_needs_a_login(db):
    assert client_for().get("/api/auth/identities/").status_code == 401


def test_unlinks_an_identity_when_a_password_remains(alice):
    identity = SocialIdentity.objects.create(user=alice, provider="discord", subject="d-1", email="alice@acme.test")
    response = client_for(alice).delete(f"/api/auth/identities/{identity.pk}/")
    assert response.status_code == 204
    assert not SocialIdentity.objects.filter(pk=identity.pk).exists()


def test_unlinks_one_of_two_identities_of_a_passwordless_user(tenant):
    user = social_user(tenant, providers=("google", "discord"))
    google = user.social_identities.get(provider="google")
    assert client_for(user).delete(f"/api/auth/identities/{google.pk}/").status_code == 204
    assert list(user.social_identities.values_list("provider", flat=True)) == ["discord"]


def test_refuses_to_unlink_the_last_way_to_log_in(tenant):
    user = social_user(tenant)
    (only,) = user.social_identities.all()

    response = client_for(user).delete(f"/api/auth/identities/{only.pk}/")

    assert response.status_code == 409 and response.json()["code"] == "last_login_method"
    assert SocialIdentity.objects.filter(pk=only.pk).exists()


def test_another_users_identity_is_404(alice, bob):
    identity = SocialIdentity.objects.create(user=bob, provider="google", subject="g-bob", email="bob@acme.test")
    assert client_for(alice).delete(f"/api/auth/identities/{identity.pk}/").status_code == 404
    assert SocialIdentity.objects.filter(pk=identity.pk).exists()


@pytest.fixture
def ops_client(tenant):
    ops = User.objects.create_superuser("ops@thor.test", "ops-password-123", tenant=tenant)
    client = Client()
    client.force_login(ops)
    return client


def test_the_admin_shows_a_users_linked_identities(ops_client, alice):
    SocialIdentity.objects.create(user=alice, provider="google", subject="108234", email="alice@gmail.test")
    response = ops_client.get(f"/admin/identity/user/{alice.pk}/change/")
    assert response.status_code == 200
    assert "Social identities" in response.text and "108234" in response.text


def test_the_admin_stores_a_provider_app_secret_encrypted_and_never_shows_it(ops_client, tenant):
    response = ops_client.post(
        "/admin/identity/socialapp/add/",
        {
            "tenant": tenant.pk,
            "provider": "google",
            "client_id": "acme.apps.example",
            "client_secret": "s3cret-value",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content
    app = SocialApp.objects.get(tenant=tenant, provider="google")
    assert app.client_secret == "s3cret-value"
    change = ops_client.get(f"/admin/identity/socialapp/{app.pk}/change/")
    assert change.status_code == 200 and "s3cret-value" not in change.text

    # A change that leaves the secret blank keeps it.
    ops_client.post(
        f"/admin/identity/socialapp/{app.pk}/change/",
        {
            "tenant": tenant.pk,
            "provider": "google",
            "client_id": "acme.apps.example",
            "client_secret": "",
            "enabled": "on",
        },
    )
    app.refresh_from_db()
    assert app.client_secret == "s3cret-value"


def test_the_secret_is_stored_encrypted(tenant):
    from django.db import connection

    app = SocialApp.objects.create(tenant=tenant, provider="discord", client_id="c", client_secret="plain-secret")
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM identity_socialapp WHERE id = %s", [app.pk])
        (stored,) = cursor.fetchone()
    assert "plain-secret" not in stored


def test_a_factory_user_has_a_password_a_social_user_has_none(tenant):
    assert UserFactory(tenant=tenant).has_usable_password()
    assert not social_user(tenant).has_usable_password()
