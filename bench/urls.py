"""Thor's URLs plus the benchmark's views: the bare baseline and one view per layer of the cached read.

Under /api/ like the endpoints they are compared with, so that path-dependent middleware (CORS, the
admin-only middleware kept off /api/) treats them alike. Each adds one layer to the one before:

- /api/bench/anonymous: Thor's settings, middleware, URL resolution and DRF, no authentication;
- /api/bench/bare: the same behind Thor's JWT authentication and permission (what every endpoint pays);
- /api/bench/account: bare plus resolving the user's account, as the live reads do;
- /api/accounts/primary/positions (Thor's own URL): plus the snapshot cache read and the answer.
"""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors
from thor import urls as thor_urls

handler400 = thor_urls.handler400
handler403 = thor_urls.handler403
handler404 = thor_urls.handler404
handler500 = thor_urls.handler500


class AnonymousView(APIView):
    """Thor's middleware and DRF for a request nobody signs: no authentication, no work."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True, "user_id": None})


class BareView(APIView):
    """Everything DRF and Thor do for any request (middleware, JWT, permissions, JSON), and no work."""

    def get(self, request):
        return Response({"ok": True, "user_id": request.user.pk})


def _account_ref(request) -> str:
    return request.query_params.get("account", "primary")


class AccountView(APIView):
    """Bare plus the account resolution of the live reads (`primary` or an id, anyone else's a 404)."""

    def get(self, request):
        account = selectors.account_for_read_get(user=request.user, account_ref=_account_ref(request))
        return Response({"ok": True, "account_id": account.pk})


urlpatterns = [
    path("api/bench/anonymous", AnonymousView.as_view()),
    path("api/bench/bare", BareView.as_view()),
    path("api/bench/account", AccountView.as_view()),
    *thor_urls.urlpatterns,
]
