"""Thor's URLs plus `/api/bench/bare`: the baseline the positions endpoint is measured against.

Under /api/ like the endpoint it is compared with, so that path-dependent middleware (CORS) treats both alike.
"""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from thor import urls as thor_urls

handler400 = thor_urls.handler400
handler403 = thor_urls.handler403
handler404 = thor_urls.handler404
handler500 = thor_urls.handler500


class BareView(APIView):
    """Everything DRF and Thor do for any request (middleware, JWT, permissions, JSON), and no work."""

    def get(self, request):
        return Response({"ok": True, "user_id": request.user.pk})


urlpatterns = [path("api/bench/bare", BareView.as_view()), *thor_urls.urlpatterns]
