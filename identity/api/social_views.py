"""Social login (seed 004): start at a provider, come back, land on the SPA with tokens."""

import logging

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from identity.api import serializers
from identity.social import delivery, services
from identity.social.browser import callback, start_redirect
from identity.social.providers import PROVIDERS
from thor.errors import ApplicationError, error_responses
from thor.throttles import OAuthStartRateThrottle
from thor.views import LOGIN_LINK_PAGE, BrowserRedirectView, LoginLinkInvalid

logger = logging.getLogger("thor.identity")

PATH_PARAMETERS = [
    OpenApiParameter("agent_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The tenant slug."),
    OpenApiParameter("provider", OpenApiTypes.STR, OpenApiParameter.PATH, enum=sorted(PROVIDERS)),
]


def _known_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise ApplicationError("Unknown login provider.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)


class SocialLoginView(BrowserRedirectView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [OAuthStartRateThrottle]

    @extend_schema(
        summary="Seed 004: log in with Google or Discord; redirects to the provider (Zerodha has its own path)",
        description=(
            "`redirect_uri` must be on one of the tenant's allowed origins; its `marketing_opt_in` query "
            "value travels in the signed state. Sets a short-lived HttpOnly cookie that the callback requires."
        ),
        parameters=[
            *PATH_PARAMETERS,
            OpenApiParameter("redirect_uri", OpenApiTypes.STR, required=True),
        ],
        responses={302: None, **error_responses(400, 404, 429, 503)},
    )
    def get(self, request, agent_id: str, provider: str):
        tenant = services.tenant_get_for_login(slug=agent_id)
        _known_provider(provider)
        start = services.social_login_start(
            tenant=tenant, provider=provider, redirect_uri=request.query_params.get("redirect_uri", "")
        )
        return start_redirect(start.authorization_url, start.issued, request)


class SocialCallbackView(BrowserRedirectView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Seed 004: the provider's return; redirects to the SPA page with the tokens or error=<code>",
        parameters=[
            *PATH_PARAMETERS,
            OpenApiParameter("code", OpenApiTypes.STR),
            OpenApiParameter("state", OpenApiTypes.STR),
            OpenApiParameter("error", OpenApiTypes.STR),
        ],
        responses={302: None, 400: LOGIN_LINK_PAGE, **error_responses(404)},
    )
    def get(self, request, agent_id: str, provider: str):
        if provider not in PROVIDERS:
            raise LoginLinkInvalid

        def complete(state):
            user, found = services.social_login_finish(state=state, params=request.query_params)
            return user, found.email

        return callback(request, agent_id=agent_id, provider=provider, complete=complete)


class CodeExchangeView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [OAuthStartRateThrottle]

    @extend_schema(
        summary="Trade a social login's one-time code (token delivery `code`) for seed 004's fields and a refresh token",
        description="The code works once, within 60 seconds of the redirect that carried it.",
        request=serializers.CodeExchangeInputSerializer,
        responses={200: serializers.SocialLoginFieldsSerializer, **error_responses(400, 404, 429)},
    )
    def post(self, request):
        data = serializers.CodeExchangeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = delivery.login_code_exchange(code=data.validated_data["code"])
        response = Response(serializers.SocialLoginFieldsSerializer(body).data)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response


class IdentityListView(APIView):
    @extend_schema(
        summary="Your linked login identities (Google, Discord, Zerodha)",
        responses={200: serializers.SocialIdentityOutputSerializer(many=True), **error_responses(401)},
    )
    def get(self, request):
        identities = services.identity_list(user=request.user)
        return Response(serializers.SocialIdentityOutputSerializer(identities, many=True).data)


class IdentityDetailView(APIView):
    @extend_schema(
        summary="Unlink a login identity, unless it is your last way to log in",
        responses={204: None, **error_responses(401, 404, 409)},
    )
    def delete(self, request, identity_id: int):
        services.identity_unlink(user=request.user, identity_id=identity_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
