import pytest

from identity.models import Tenant, User
from identity.services import tenant_create, user_register
from identity.signals import user_registered
from thor.errors import ApplicationError

pytestmark = pytest.mark.django_db

STRONG = "a-Strong-passphrase-42"


class TestUserRegister:
    def test_is_atomic_no_user_when_what_other_apps_give_a_new_user_fails(self, tenant):
        def failing_account(sender, user, **kwargs):
            raise RuntimeError("paper account could not be created")

        user_registered.connect(failing_account)
        try:
            with pytest.raises(RuntimeError):
                user_register(email="new@acme.test", password=STRONG, tenant_slug="acme")
        finally:
            user_registered.disconnect(failing_account)

        assert not User.objects.filter(email="new@acme.test").exists()

    def test_stores_the_email_lower_case(self, tenant):
        user = user_register(email="New.User@ACME.test", password=STRONG, tenant_slug="acme")

        assert user.email == "new.user@acme.test"
        assert user.trading_accounts.get().is_primary


class TestTenantCreate:
    def test_creates_a_tenant_with_its_origins(self, db):
        tenant = tenant_create(slug="initech", name="Initech", allowed_origins=["https://app.initech.test"])

        assert tenant.allowed_origins == ["https://app.initech.test"]
        assert tenant.allows_origin("https://app.initech.test/oauth-complete.html")
        assert not tenant.allows_origin("https://app.initech.test.evil.test/")

    @pytest.mark.parametrize(
        "origin",
        [
            "https://app.initech.test/",
            "https://app.initech.test/path",
            "javascript:alert(1)",
            "https://evil@app.initech.test",
            "HTTPS://APP.initech.test",
            "https://app.initech.test:443",
            "*",
        ],
    )
    def test_rejects_anything_but_exact_canonical_origins(self, db, origin):
        with pytest.raises(ApplicationError) as raised:
            tenant_create(slug="initech", name="Initech", allowed_origins=["https://ok.test", origin])

        assert raised.value.code == "invalid_origin"
        assert not Tenant.objects.filter(slug="initech").exists()

    def test_rejects_a_duplicate_slug(self, tenant):
        with pytest.raises(ApplicationError) as raised:
            tenant_create(slug="acme", name="Acme again", allowed_origins=[])

        assert raised.value.code == "duplicate_tenant"

    def test_a_new_default_replaces_the_old_one(self, db):
        tenant_create(slug="initech", name="Initech", allowed_origins=[], default=True)

        assert list(Tenant.objects.filter(is_default=True).values_list("slug", flat=True)) == ["initech"]


class TestTenantValidation:
    @pytest.mark.parametrize("origin", ["*", "null", "https://app.test/path", "javascript:alert(1)"])
    def test_the_admin_cannot_save_a_wildcard_or_inexact_origin(self, db, origin):
        from django.core.exceptions import ValidationError

        tenant = Tenant(slug="initech", name="Initech", allowed_origins=["https://ok.test", origin])

        with pytest.raises(ValidationError) as raised:
            tenant.full_clean()

        assert "allowed_origins" in raised.value.message_dict
