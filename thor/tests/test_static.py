"""Production serves the admin's static files itself (WhiteNoise), after the collectstatic of the image build."""

import json
import subprocess
import sys

import pytest
from django.conf import settings

from thor.tests.test_settings import PRODUCTION, environment_with

FETCH = """
import json, django
django.setup()
from django.templatetags.static import static
from django.test import Client
client = Client(HTTP_HOST="thor.example.com")
url = static("admin/css/base.css")
hashed = client.get(url, secure=True)
plain = client.get("/static/admin/css/base.css", secure=True)
missing = client.get("/static/admin/css/nothing-here.css", secure=True)
print(json.dumps({
    "url": url,
    "hashed": [hashed.status_code, hashed.get("Cache-Control", ""), b"".join(hashed.streaming_content)[:200].decode()],
    "plain": plain.status_code,
    "missing": missing.status_code,
}))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    environment = environment_with({**PRODUCTION, "THOR_STATIC_ROOT": str(tmp_path_factory.mktemp("static"))})
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collect.returncode == 0, collect.stderr
    fetch = subprocess.run(
        [sys.executable, "-c", FETCH], cwd=settings.BASE_DIR, env=environment, capture_output=True, text=True
    )
    assert fetch.returncode == 0, fetch.stderr
    return json.loads(fetch.stdout)


def test_the_admin_css_is_served_under_its_hashed_name_cached_for_good(served):
    status, cache_control, body = served["hashed"]

    assert served["url"].startswith("/static/admin/css/base.") and served["url"] != "/static/admin/css/base.css"
    assert status == 200 and body.strip()
    assert "immutable" in cache_control and "max-age=315360000" in cache_control


def test_the_unhashed_name_works_too_and_nothing_else_is_invented(served):
    assert served["plain"] == 200
    assert served["missing"] == 404


def test_the_image_build_collects_the_static_files():
    dockerfile = (settings.BASE_DIR / "Dockerfile").read_text()

    assert "THOR_ENV=production" in dockerfile and "manage.py collectstatic --noinput" in dockerfile


@pytest.mark.django_db
def test_development_serves_the_admin_css_without_collectstatic(client):
    response = client.get("/static/admin/css/base.css")

    assert response.status_code == 200
