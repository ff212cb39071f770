"""docker-compose.yml: migrations run once, as their own one-shot service, before anything that needs them.

No Docker engine here, so the file is read as Compose reads it (YAML, merge keys included).
"""

import pytest
import yaml
from django.conf import settings


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load((settings.BASE_DIR / "docker-compose.yml").read_text())["services"]


def test_migrations_are_a_one_shot_service(services):
    migrate = services["migrate"]

    assert migrate["command"] == "python manage.py migrate --noinput"
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}


@pytest.mark.parametrize("name", ["web", "worker", "beat", "market-stream"])
def test_the_app_services_start_after_migrations_succeeded(services, name):
    depends_on = services[name]["depends_on"]

    assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
    assert depends_on["postgres"] == {"condition": "service_healthy"}
    assert "migrate" not in services[name]["command"]


def test_every_thor_service_runs_the_production_configuration(services):
    for name in ("migrate", "web", "worker", "beat", "market-stream"):
        assert services[name]["environment"]["THOR_ENV"] == "production", name
