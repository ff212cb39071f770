"""Settings come from the environment; a bad value stops start-up naming the variable.

Settings are read once per process, so the cases run in fresh interpreters: each configuration that starts
Django in one of its own, and the bad values one after another in a single one that imports the settings
module anew for each (which is all a start-up does with them before it stops).
"""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

# Blank rather than absent, so a developer's .env (read with overwrite=False) cannot leak in;
# blank means "not set" to the settings.
BLANKED = [
    "THOR_ENV",
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "THOR_ENCRYPTION_KEYS",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CORS_ALLOWED_ORIGINS",
    "THOR_EMBEDDED_SCHEDULER",
    "SECURE_SSL_REDIRECT",
]
PRODUCTION = {
    "THOR_ENV": "production",
    "DEBUG": "false",
    "SECRET_KEY": "test-only-secret-key-of-a-reasonable-length-0123456789",
    "ALLOWED_HOSTS": "thor.example.com",
    "THOR_ENCRYPTION_KEYS": "A2RxJ1x8KsWmJSrdyb2wWnpPu4xUV4SvEKZhP9l4eDg=",
}
REPORT = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "database": s.DATABASES["default"]["ENGINE"],
    "cache": s.CACHES["default"]["BACKEND"],
    "channel_layer": s.CHANNEL_LAYERS["default"]["BACKEND"],
    "celery_eager": s.CELERY_TASK_ALWAYS_EAGER,
    "celery_broker": s.CELERY_BROKER_URL,
    "embedded_scheduler": s.THOR_EMBEDDED_SCHEDULER,
    "debug": s.DEBUG,
}))
"""


def environment_with(variables):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("THOR_")}
    environment.update(dict.fromkeys(BLANKED, ""), DJANGO_SETTINGS_MODULE="thor.settings", **variables)
    return environment


IMPORT_EACH = """
import importlib, json, os, sys, traceback
base, results = dict(os.environ), {}
for name, variables in json.loads(sys.stdin.read()).items():
    os.environ.clear()
    os.environ.update({**base, **variables})
    sys.modules.pop("thor.settings", None)
    try:
        importlib.import_module("thor.settings")
        results[name] = [0, ""]
    except Exception:
        results[name] = [1, traceback.format_exc()]
print(json.dumps(results))
"""


def import_each(cases):
    """The settings module imported once per case, in one interpreter: what each start-up would have said."""
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH],
        cwd=settings.BASE_DIR,
        env=environment_with({}),
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return {
        name: subprocess.CompletedProcess(run.args, returncode, "", stderr)
        for name, (returncode, stderr) in json.loads(run.stdout).items()
    }


def start_all(cases):
    """Start one interpreter per case at once (each takes most of a second), then collect them."""
    running = {
        name: subprocess.Popen(
            [sys.executable, "-c", REPORT],
            cwd=settings.BASE_DIR,
            env=environment_with(variables),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, variables in cases.items()
    }
    results = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=60)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


PRODUCTION_STACK = {
    **PRODUCTION,
    "DATABASE_URL": "postgres://thor:thor@db.internal:5432/thor",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "CELERY_BROKER_URL": "redis://cache.internal:6379/1",
}
BAD_VALUES = {
    "DATABASE_URL=notaurl": ("DATABASE_URL", {"DATABASE_URL": "notaurl"}),
    "DATABASE_URL=mysql": ("DATABASE_URL", {"DATABASE_URL": "mysql://thor@db/thor"}),
    "REDIS_URL=http": ("REDIS_URL", {"REDIS_URL": "http://x"}),
    "CELERY_BROKER_URL=ftp": ("CELERY_BROKER_URL", {"CELERY_BROKER_URL": "ftp://x"}),
    "DEBUG=maybe": ("DEBUG", {"DEBUG": "maybe"}),
    "THOR_ENV=staging": ("THOR_ENV", {"THOR_ENV": "staging"}),
    "THOR_ACCESS_TOKEN_MINUTES=fifteen": ("THOR_ACCESS_TOKEN_MINUTES", {"THOR_ACCESS_TOKEN_MINUTES": "fifteen"}),
    "THOR_LOGIN_RATE=prose": ("THOR_LOGIN_RATE", {"THOR_LOGIN_RATE": "20 per minute"}),
    "THOR_EMBEDDED_SCHEDULER=sometimes": ("THOR_EMBEDDED_SCHEDULER", {"THOR_EMBEDDED_SCHEDULER": "sometimes"}),
    # Revocation must stay within 5 seconds however the reads cache identity.
    "THOR_READ_CACHE_SECONDS=60": ("THOR_READ_CACHE_SECONDS", {"THOR_READ_CACHE_SECONDS": "60"}),
    "production without SECRET_KEY": ("SECRET_KEY", {**PRODUCTION, "SECRET_KEY": ""}),
    "production without THOR_ENCRYPTION_KEYS": ("THOR_ENCRYPTION_KEYS", {**PRODUCTION, "THOR_ENCRYPTION_KEYS": ""}),
    "production without ALLOWED_HOSTS": ("ALLOWED_HOSTS", {**PRODUCTION, "ALLOWED_HOSTS": ""}),
    "production with DEBUG=true": ("DEBUG", {**PRODUCTION, "DEBUG": "true"}),
    "production with the development SECRET_KEY": (
        "SECRET_KEY",
        {**PRODUCTION, "SECRET_KEY": settings.DEVELOPMENT_SECRET_KEY},
    ),
    "production with a short SECRET_KEY": (
        "SECRET_KEY",
        {**PRODUCTION, "SECRET_KEY": "s" * 20 + "0123456789" * 2 + "abcdefghi"},
    ),
    "THOR_FORWARDED_ALLOW_IPS=a name": ("THOR_FORWARDED_ALLOW_IPS", {"THOR_FORWARDED_ALLOW_IPS": "proxy.internal"}),
    "forwarded headers believed twice": (
        "THOR_TRUSTED_PROXIES",
        {"THOR_FORWARDED_ALLOW_IPS": "10.0.0.5", "THOR_TRUSTED_PROXIES": "1"},
    ),
    "THOR_MAX_REQUEST_BYTES=0": ("THOR_MAX_REQUEST_BYTES", {"THOR_MAX_REQUEST_BYTES": "0"}),
    "THOR_MAX_REQUEST_BYTES=1MB": ("THOR_MAX_REQUEST_BYTES", {"THOR_MAX_REQUEST_BYTES": "1MB"}),
    "THOR_SHUTDOWN_SECONDS=0": ("THOR_SHUTDOWN_SECONDS", {"THOR_SHUTDOWN_SECONDS": "0"}),
    "THOR_SHUTDOWN_SECONDS=soon": ("THOR_SHUTDOWN_SECONDS", {"THOR_SHUTDOWN_SECONDS": "soon"}),
    # Audit rows are kept for years: a retention of none, or of words, stops start-up.
    "THOR_AUDIT_RETENTION_DAYS=0": ("THOR_AUDIT_RETENTION_DAYS", {"THOR_AUDIT_RETENTION_DAYS": "0"}),
    "THOR_AUDIT_RETENTION_DAYS=5y": ("THOR_AUDIT_RETENTION_DAYS", {"THOR_AUDIT_RETENTION_DAYS": "5y"}),
    "THOR_AUDIT_SEAL_SECONDS=0": ("THOR_AUDIT_SEAL_SECONDS", {"THOR_AUDIT_SEAL_SECONDS": "0"}),
}


@pytest.fixture(scope="module")
def started():
    return start_all({"embedded": {}, "production": PRODUCTION_STACK}) | import_each(
        {name: variables for name, (_, variables) in BAD_VALUES.items()}
    )


class TestEmbeddedDefault:
    def test_nothing_set_runs_on_sqlite_locmem_in_memory_layer_and_eager_celery(self, started):
        result = started["embedded"]

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {
            "database": "django.db.backends.sqlite3",
            "cache": "django.core.cache.backends.locmem.LocMemCache",
            "channel_layer": "channels.layers.InMemoryChannelLayer",
            "celery_eager": True,
            "celery_broker": "memory://",
            "embedded_scheduler": True,
            "debug": True,
        }


class TestProductionLikeStack:
    def test_urls_switch_to_postgres_redis_and_a_real_broker(self, started):
        result = started["production"]

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {
            "database": "django.db.backends.postgresql",
            "cache": "django_redis.cache.RedisCache",
            "channel_layer": "channels_redis.core.RedisChannelLayer",
            "celery_eager": False,
            "celery_broker": "redis://cache.internal:6379/1",
            "embedded_scheduler": False,
            "debug": False,
        }


class TestBadValuesStopStartup:
    @pytest.mark.parametrize("case", BAD_VALUES)
    def test_fails_naming_the_variable(self, started, case):
        named, _ = BAD_VALUES[case]

        result = started[case]

        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr
        assert f"Environment variable {named}" in result.stderr


def deploy_check(variables):
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=environment_with(variables),
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestDeployCheck:
    def test_the_development_secret_key_is_reported(self):
        result = deploy_check({})

        assert result.returncode != 0
        assert "thor.E001" in result.stderr and "SECRET_KEY is the public development key" in result.stderr

    def test_the_production_configuration_passes_clean(self):
        result = deploy_check(PRODUCTION)

        assert result.returncode == 0, result.stderr
        assert "thor.E001" not in result.stderr + result.stdout


# The Redis URLs are worked out as the settings module is imported, so reading the settings is enough: loading
# every app (django.setup), as a server goes on to do, changes nothing that is compared here.
REDIS_REPORT = """
import json, sys
if sys.argv[1] == "under pytest":
    import pytest  # noqa: F401
from django.conf import settings as s
print(json.dumps([s.REDIS_URL, s.CACHES["default"]["LOCATION"], s.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"]]))
"""


def redis_urls_of(worker: str, how: str, redis_url="redis://127.0.0.1:6379/14") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", REDIS_REPORT, how],
        cwd=settings.BASE_DIR,
        env=environment_with({"REDIS_URL": redis_url, "PYTEST_XDIST_WORKER": worker}),
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestEachTestWorkerHasItsOwnRedisDB:
    def test_worker_n_adds_n_to_the_db_for_the_cache_and_the_channel_layer(self):
        result = redis_urls_of("gw1", "under pytest")

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == ["redis://127.0.0.1:6379/15"] * 3

    def test_a_server_a_test_starts_keeps_the_url_it_is_handed(self):
        result = redis_urls_of("gw1", "on its own", redis_url="redis://127.0.0.1:6379/15")

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == ["redis://127.0.0.1:6379/15"] * 3

    @pytest.mark.parametrize(("redis_url", "worker"), [("redis://127.0.0.1:6379/14", "gw2"), ("redis://h/5", "gw2")])
    def test_a_worker_past_db_15_or_on_another_suites_db_stops_startup(self, redis_url, worker):
        result = redis_urls_of(worker, "under pytest", redis_url=redis_url)

        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr and f"pytest-xdist worker {worker}" in result.stderr
