"""The framework's floor: one DRF `APIView`, no middleware, no authentication, outside Thor's settings.

Served by each candidate server in the same run as Thor (`bench.minimal_drf:wsgi` for WSGI servers,
`bench.minimal_drf:asgi` for uvicorn), so Thor's figures read as a share of what Django REST
framework itself can do on this machine under that server.
"""

import django
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
from django.urls import path  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


class MinimalView(APIView):
    def get(self, request):
        return Response({"ok": True, "user_id": None})


urlpatterns = [path("api/bench/minimal", MinimalView.as_view())]

wsgi = get_wsgi_application()
asgi = get_asgi_application()
