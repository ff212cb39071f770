"""Seed 002's Schwab OAuth endpoints, and the error shape its SPA reads (our format plus `error`)."""

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from django.http import HttpResponseRedirect
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers import oauth_state, services
from brokers.api import market_data_views, serializers
from brokers.api.views import query_and_body
from thor.errors import ApplicationError, ErrorSerializer
from thor.throttles import OAuthStartRateThrottle
from thor.views import BrowserRedirectView, LoginLinkInvalid

logger = logging.getLogger("thor.brokers")

# What each callback failure says to the SPA (seed 002 shows `error` to the user).
CALLBACK_FAILURES = {
    "missing_code": (400, "No authorization code provided"),
    "invalid_code": (400, "The authorization code is not valid."),
    "state_invalid": (400, "The Schwab login link is invalid, expired or already used."),
    "state_expired": (400, "The Schwab login link has expired; connect again."),
    "state_used": (400, "The Schwab login link was already used; connect again."),
    "denied": (400, "The Schwab login was not approved."),
    "exchange_failed": (400, "Schwab did not accept the authorization code; connect again."),
    "accounts_unavailable": (503, "Schwab did not list the accounts; connect again shortly."),
    "conflict": (409, "This Schwab login was linked by another request."),
}


class Seed002ErrorSerializer(ErrorSerializer):
    error = drf_serializers.CharField(help_text="Seed 002's key: the same message as `detail`.")


def seed002_errors(*status_codes):
    return {status_code: Seed002ErrorSerializer for status_code in status_codes}


if TYPE_CHECKING:
    _View = APIView  # what the mixin goes in front of
else:
    _View = object


class Seed002ErrorsMixin(_View):
    """Every error answer of seed 002's endpoints also carries `error`, which its SPA shows."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # A BrowserRedirectView's page for a bad login link is HTML: nothing to add to.
        if isinstance(getattr(response, "data", None), dict) and "detail" in response.data:
            response.data["error"] = response.data["detail"]
        return response


class SchwabOAuthStartOutputSerializer(drf_serializers.Serializer):
    auth_url = drf_serializers.URLField()


class SchwabCallbackOutputSerializer(drf_serializers.Serializer):
    success = drf_serializers.BooleanField()
    connection = serializers.ConnectionOutputSerializer()


class SchwabOAuthStartView(Seed002ErrorsMixin, APIView):
    throttle_classes = [OAuthStartRateThrottle]

    @extend_schema(
        summary="Seed 002: the Schwab authorize URL for the signed-in user",
        parameters=[OpenApiParameter("frontend_url", str, description="An allowed origin to return to.")],
        responses={200: SchwabOAuthStartOutputSerializer, **seed002_errors(400, 401, 404, 429)},
    )
    def get(self, request):
        data = serializers.FrontendUrlInputSerializer(data=query_and_body(request))
        data.is_valid(raise_exception=True)
        auth_url = services.schwab_connect_start(
            user=request.user, frontend_url=data.validated_data.get("frontend_url")
        )
        return Response(SchwabOAuthStartOutputSerializer({"auth_url": auth_url}).data)


def _to_frontend(origin: str, **params) -> HttpResponseRedirect:
    response = HttpResponseRedirect(f"{origin}/?{urlencode({'broker': 'schwab', **params})}")
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


class SchwabOAuthCallbackView(Seed002ErrorsMixin, BrowserRedirectView):
    """With a Bearer JWT (the SPA relays the code) it answers JSON; a browser Schwab sent straight
    here is redirected to the SPA, whatever happened. The signed state says which user the flow is for."""

    permission_classes = [AllowAny]

    @extend_schema(
        summary="Seed 002: finish the Schwab login (JSON with a Bearer JWT, else a redirect to the SPA)",
        description=(
            "A browser without a Bearer JWT is always redirected to `{frontend}/?broker=schwab&status=...`: "
            "`connected`, `confirm&code=<code>` (tenants with link confirmation: finish with "
            "`POST /api/brokers/connections/confirm`), or `error&error=<code>` (`state_expired` and "
            "`state_used` included); a state Thor did not sign gets a 400 HTML page. An operator's market-data "
            "login (its state says so) ends on the admin instead, and only in that operator's admin session: "
            "another browser gets a 403 HTML page."
        ),
        parameters=[
            OpenApiParameter("code", str, description="Schwab's authorization code, as Schwab sent it."),
            OpenApiParameter("state", str, description="The state Schwab handed back."),
            OpenApiParameter("error", str, description="Set by Schwab when the login was not approved."),
        ],
        responses={
            200: SchwabCallbackOutputSerializer,
            302: None,
            **seed002_errors(400, 401, 409, 503),
            403: market_data_views.NOT_THE_OPERATOR_PAGE,
        },
    )
    def get(self, request):
        relayed = bool(request.user and request.user.is_authenticated)
        params = request.query_params
        code = params.get("code", "")
        if relayed and not code and not params.get("error"):
            # Checked first, so a relay without its code does not use up the flow.
            raise self._failure("missing_code")
        try:
            state = services.schwab_state_consume(
                state_token=params.get("state", ""), user=request.user if relayed else None
            )
            if market_data_views.is_market_data(state):
                # An operator's login of the tenant's market-data session (never relayed: schwab_state_consume
                # refuses it then): back to the admin, never the SPA.
                return market_data_views.market_data_callback(request, state, params)
            if not oauth_state.origin_allowed(state):
                raise services.CallbackFailed("state_invalid")
        except services.CallbackFailed as failure:
            return self._state_refused(failure, relayed=relayed)
        try:
            if params.get("error"):
                raise services.CallbackFailed("denied")
            # A relay carries the Bearer of the user who started the flow (schwab_state_consume checked it):
            # that is the confirmation a browser sent straight here cannot give.
            connection = services.schwab_callback_complete(state=state, code=code, by_its_user=relayed)
        except services.CallbackFailed as failure:
            if relayed:
                raise self._failure(failure.code) from None
            return _to_frontend(state.frontend_origin, status="error", error=failure.code)
        except services.LinkAwaitsConfirmation as parked:
            return _to_frontend(state.frontend_origin, status="confirm", code=parked.code)
        except Exception:
            logger.exception("Schwab callback failed")
            if relayed:
                raise
            return _to_frontend(state.frontend_origin, status="error", error="server_error")
        if relayed:
            body = {"success": True, "connection": connection}
            return Response(SchwabCallbackOutputSerializer(body).data)
        return _to_frontend(state.frontend_origin, status="connected")

    def _state_refused(self, failure: services.CallbackFailed, *, relayed: bool):
        """The SPA that relayed reads JSON; a browser goes back to the state's frontend, or sees a page
        when the state is not Thor's (then there is no allow-listed origin to send it to)."""
        if relayed:
            raise self._failure(failure.code)
        if market_data_views.is_market_data(failure.state):
            assert failure.state is not None
            return market_data_views.back_to_admin(failure.state, failure.code)
        if failure.state is None or not oauth_state.origin_allowed(failure.state):
            raise LoginLinkInvalid
        return _to_frontend(failure.state.frontend_origin, status="error", error=failure.code)

    @staticmethod
    def _failure(code: str) -> ApplicationError:
        status_code, message = CALLBACK_FAILURES.get(code, (400, "The Schwab login could not be finished."))
        return ApplicationError(message, code=code, status_code=status_code)
