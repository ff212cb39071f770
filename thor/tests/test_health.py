import pytest

pytestmark = pytest.mark.django_db

STOPPED_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def stopped_redis(settings):
    """Cache and channel layer pointed at a port where nothing listens.

    Overriding CACHES / CHANNEL_LAYERS makes Django and Channels build new backends, and
    django_redis keys its connection pools by URL, so no pool to the live Redis is reused.
    """
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": STOPPED_REDIS},
    }
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [STOPPED_REDIS]}}
    }


class TestHealth:
    def test_all_up_is_200(self, anon_client):
        response = anon_client.get("/api/health/")

        assert response.status_code == 200
        assert response.json() == {
            "status": "ok",
            "checks": {"database": "ok", "cache": "ok", "channel_layer": "ok", "celery_broker": "ok"},
        }

    def test_needs_no_token_and_answers_without_a_slash(self, anon_client):
        assert anon_client.get("/api/health").status_code == 200


class TestHealthWithRedisStopped:
    def test_reports_cache_and_channel_layer_as_errors_with_503(self, anon_client, stopped_redis):
        response = anon_client.get("/api/health/")

        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["cache"].startswith("error: ")
        assert body["checks"]["channel_layer"].startswith("error: ")

    def test_the_rest_of_the_api_keeps_answering(self, alice_client, stopped_redis):
        response = alice_client.get("/api/auth/me/")

        assert response.status_code == 200
        assert response.json()["email"] == "alice@acme.test"

    def test_login_keeps_working_though_its_throttle_lives_in_the_cache(self, anon_client, alice, stopped_redis):
        from identity.tests.factories import PASSWORD

        response = anon_client.post("/api/auth/token/", {"email": alice.email, "password": PASSWORD})

        assert response.status_code == 200
