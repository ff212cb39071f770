import io

import pytest
from django.core.management import CommandError, call_command

from identity.models import Tenant, User

pytestmark = pytest.mark.django_db


def run(*args):
    output = io.StringIO()
    call_command(*args, stdout=output)
    return output.getvalue()


class TestCreateTenant:
    def test_creates_a_tenant_with_its_origins(self):
        output = run(
            "create_tenant",
            "initech",
            "--name",
            "Initech",
            "--origin",
            "https://a.test",
            "--origin",
            "http://localhost:3000",
        )

        tenant = Tenant.objects.get(slug="initech")
        assert tenant.name == "Initech"
        assert tenant.allowed_origins == ["https://a.test", "http://localhost:3000"]
        assert not tenant.is_default
        assert "Created tenant initech" in output

    def test_a_bad_origin_is_a_command_error(self):
        with pytest.raises(CommandError, match="javascript:alert"):
            run("create_tenant", "initech", "--origin", "javascript:alert(1)")

        assert not Tenant.objects.filter(slug="initech").exists()

    def test_a_duplicate_slug_is_a_command_error(self):
        with pytest.raises(CommandError, match="already exists"):
            run("create_tenant", "default")


class TestSeedDemo:
    def test_makes_the_demo_tenant_the_default_allowing_the_spa(self):
        run("seed_demo")

        demo = Tenant.objects.get(is_default=True)
        assert demo.slug == "demo"
        assert demo.allowed_origins == ["http://localhost:5173"]
        assert User.objects.get(email="demo@thor.local").tenant == demo

    def test_is_idempotent(self):
        run("seed_demo")

        run("seed_demo")

        assert Tenant.objects.filter(slug="demo").count() == 1
        assert Tenant.objects.get(slug="demo").allowed_origins == ["http://localhost:5173"]
        assert User.objects.filter(email="demo@thor.local").count() == 1
        assert User.objects.get(email="demo@thor.local").trading_accounts.count() == 1


class TestDefaultTenantMigration:
    def test_a_default_tenant_exists_after_migrate(self):
        assert Tenant.objects.get(is_default=True).slug == "default"
