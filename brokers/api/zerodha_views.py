"""Log in with Zerodha (seed 003 through seed 004's routes): the login start and its callback."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny

from brokers.services import zerodha_login
from identity.social import state as login_state
from identity.social.browser import callback, start_redirect
from identity.social.services import tenant_get_for_login
from thor.errors import error_responses
from thor.throttles import OAuthStartRateThrottle
from thor.views import LOGIN_LINK_PAGE, BrowserRedirectView

AGENT = OpenApiParameter("agent_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The tenant slug.")


class ZerodhaLoginView(BrowserRedirectView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [OAuthStartRateThrottle]

    @extend_schema(
        summary="Seed 003/004: log in with Zerodha through the tenant's Kite app; redirects to Kite",
        parameters=[AGENT, OpenApiParameter("redirect_uri", OpenApiTypes.STR, required=True)],
        responses={302: None, **error_responses(400, 404, 429)},
    )
    def get(self, request, agent_id: str):
        tenant = tenant_get_for_login(slug=agent_id)
        start = zerodha_login.zerodha_login_start(
            tenant=tenant, redirect_uri=request.query_params.get("redirect_uri", "")
        )
        return start_redirect(start.authorization_url, start.issued, request)


def zerodha_login_callback(request, *, agent_id: str):
    return callback(
        request,
        agent_id=agent_id,
        provider=zerodha_login.PROVIDER,
        complete=lambda state: zerodha_login.zerodha_login_finish(state=state, params=request.query_params),
    )


def is_zerodha_login(request) -> bool:
    """Whether a callback on the Kite app's redirect URL belongs to a login rather than a link (an
    expired login too, so that it goes back to its SPA page saying so)."""
    return login_state.signed(request.query_params.get("state", "")) is not None


def zerodha_login_callback_from_kite(request):
    """The Kite app's registered redirect URL carries no agent: the signed state names it."""
    state = login_state.signed(request.query_params.get("state", ""))
    assert state is not None  # the Kite callback comes here only when is_zerodha_login found its signed state
    return zerodha_login_callback(request, agent_id=state.tenant_slug)


class ZerodhaCallbackView(BrowserRedirectView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Seed 003/004: Kite's return from a Zerodha login; redirects to the SPA page",
        description="Kite apps redirect to `/api/auth/broker/callback`, which hands logins here too.",
        parameters=[
            AGENT,
            OpenApiParameter("request_token", OpenApiTypes.STR),
            OpenApiParameter("status", OpenApiTypes.STR),
            OpenApiParameter("state", OpenApiTypes.STR),
        ],
        responses={302: None, 400: LOGIN_LINK_PAGE, **error_responses(404)},
    )
    def get(self, request, agent_id: str):
        return zerodha_login_callback(request, agent_id=agent_id)
