"""The real URLs plus views that exist only to force errors the real API has no reason to raise."""

from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from thor.routes import slash_optional
from thor.urls import urlpatterns as thor_urlpatterns

handler400 = "thor.errors.handler400"
handler403 = "thor.errors.handler403"
handler404 = "thor.errors.handler404"
handler500 = "thor.errors.handler500"


class StaffOnlyView(APIView):
    permission_classes = [IsAdminUser]

    def get(self, request):
        return Response({"ok": True})


class BrokenView(APIView):
    def get(self, request):
        raise RuntimeError("secret internals: password=hunter2")


def broken_django_view(request):
    raise RuntimeError("secret internals: password=hunter2")


urlpatterns = [
    *slash_optional("api/test/staff-only", StaffOnlyView.as_view()),
    *slash_optional("api/test/broken", BrokenView.as_view()),
    *slash_optional("api/test/broken-django", broken_django_view),
    *thor_urlpatterns,
]
