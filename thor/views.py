"""Base views shared by the apps."""

from rest_framework.views import APIView


class BrowserRedirectView(APIView):
    """A view a browser is sent to (an OAuth callback) and that answers with a redirect.

    Browsers ask for `text/html`, which no API renderer offers, so DRF's content negotiation would
    answer 406 before the view runs. A redirect has no body to negotiate; the error answers such a
    view may still give are rendered with the first renderer, JSON, in the one error format.
    """

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)
