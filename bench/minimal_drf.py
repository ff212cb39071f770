"""The framework's floor: one DRF `APIView`, no middleware, no authentication, outside Thor's settings.

Served by each candidate server in the same run as Thor (`bench.minimal_drf:wsgi` for WSGI servers,
`bench.minimal_drf:asgi` for uvicorn), so Thor's figures read as a share of what Django REST
framework itself can do on this machine under that server.

A second view, `/api/bench/minimal-redis`, is the same APIView answering a ready body it reads from Redis
(REDIS_URL) in one GET: the floor of any read that asks the shared cache once, as each of Thor's cached
reads must (its answer may have changed in another process since the last request); and
`/api/bench/minimal-redis-page` the same with a body the size of a first orders page (about 20 KB).
"""

import os

import django
import redis
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-minimal-drf-not-a-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
    DATABASES={},
    USE_TZ=True,
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "UNAUTHENTICATED_USER": None,
    },
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


class MinimalView(APIView):
    def get(self, request):
        return Response({"ok": True, "user_id": None})


_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"))
BODY_KEY = "bench:minimal:body"
# About the size of a positions answer of the bench world.
_redis.set(BODY_KEY, b'{"data":[%s],"source":"cache"}' % b",".join([b'{"symbol":"INFY","quantity":"10.00"}'] * 20))


PAGE_KEY = "bench:minimal:page"
# About the size of a first page of fifty orders (about 20 KB): what the payload alone costs a read that size.
_redis.set(PAGE_KEY, b'{"results":[%s],"next":null}' % b",".join([b'{"symbol":"INFY","quantity":"10.00"}' * 11] * 50))


class MinimalRedisView(APIView):
    key = BODY_KEY

    def get(self, request):
        return HttpResponse(_redis.get(self.key), content_type="application/json")


urlpatterns = [
    path("api/bench/minimal", MinimalView.as_view()),
    path("api/bench/minimal-redis", MinimalRedisView.as_view()),
    path("api/bench/minimal-redis-page", MinimalRedisView.as_view(key=PAGE_KEY)),
]

wsgi = get_wsgi_application()
asgi = get_asgi_application()
