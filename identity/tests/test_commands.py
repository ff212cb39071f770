import io

import pytest
from django.core.management import CommandError, call_command

from identity.models import Tenant

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


class TestDefaultTenantMigration:
    def test_a_default_tenant_exists_after_migrate(self):
        assert Tenant.objects.get(is_default=True).slug == "default"
