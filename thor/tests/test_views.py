"""BrowserRedirectView: what every OAuth hop a browser reaches answers, whatever happens in it."""

import pytest
from django.http import HttpResponseRedirect
from rest_framework.test import APIRequestFactory

from thor.errors import ApplicationError
from thor.tests.browser_pages import assert_login_link_page
from thor.views import BrowserRedirectView, LoginLinkInvalid


class Hop(BrowserRedirectView):
    authentication_classes = []
    permission_classes = []

    def get(self, request):
        outcome = request.query_params.get("outcome")
        if outcome == "error":
            raise ApplicationError("Nope.", code="nope")
        if outcome == "link":
            raise LoginLinkInvalid
        return HttpResponseRedirect("https://spa.test/done")


def hop(outcome: str, accept="text/html,application/xhtml+xml,*/*;q=0.8"):
    request = APIRequestFactory().get("/hop", {"outcome": outcome, "echo": "<script>x</script>"}, HTTP_ACCEPT=accept)
    response = Hop.as_view()(request)
    return response.render() if hasattr(response, "render") else response


@pytest.mark.parametrize("outcome", ["redirect", "error", "link"])
def test_every_answer_keeps_a_popups_opener(outcome):
    assert hop(outcome)["Cross-Origin-Opener-Policy"] == "unsafe-none"


def test_a_login_link_thor_cannot_trust_is_a_page_for_any_accept_header():
    for accept in ("text/html", "application/json", "image/png"):
        assert_login_link_page(hop("link", accept), "<script>")


def test_other_errors_stay_in_the_one_json_format():
    response = hop("error")

    assert response.status_code == 400 and response["Content-Type"] == "application/json"
