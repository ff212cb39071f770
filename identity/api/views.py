from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView

from identity.api import serializers
from identity.api.throttles import RefreshTokenRateThrottle, RefreshUserRateThrottle, UnverifiedRefreshRateThrottle
from identity.refresh import refresh_rotate, verified_refresh_token
from identity.services import user_register
from identity.sessions import SESSION_CLAIM, session_revoke
from identity.tokens import ThorTokenObtainPairSerializer, token_pair_for
from thor.errors import ApplicationError, error_responses
from thor.throttles import LoginRateThrottle


class RegisterView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]

    @extend_schema(
        summary="Sign up: a user, their paper account and a token pair",
        request=serializers.RegisterInputSerializer,
        responses={201: serializers.RegisterOutputSerializer, **error_responses(400, 429)},
    )
    def post(self, request):
        data = serializers.RegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_register(
            email=data.validated_data["email"],
            password=data.validated_data["password"],
            tenant_slug=data.validated_data.get("tenant"),
            marketing_opt_in=data.validated_data["marketing_opt_in"],
        )
        body = {"user": serializers.UserOutputSerializer(user).data, "tokens": token_pair_for(user)}
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema_view(
    post=extend_schema(
        summary="Log in: a token pair for an email and password",
        responses={200: serializers.TokenPairSerializer, **error_responses(400, 401, 429)},
    )
)
class TokenView(TokenObtainPairView):
    serializer_class = ThorTokenObtainPairSerializer
    throttle_classes = [LoginRateThrottle]


class TokenRefresh(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [RefreshTokenRateThrottle, RefreshUserRateThrottle, UnverifiedRefreshRateThrottle]

    @extend_schema(
        summary="A new token pair for a refresh token, which is spent (rotation)",
        description=(
            "The same refresh token presented again within THOR_REFRESH_REUSE_GRACE_SECONDS (30 by default) of "
            "its first use answers the same pair, so parallel refreshes all succeed; presented later, it ends "
            "every token of its sign-in (401)."
        ),
        request=serializers.RefreshInputSerializer,
        responses={200: serializers.TokenPairSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request):
        data = serializers.RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(refresh_rotate(raw=data.validated_data["refresh"]))


class LogoutView(APIView):
    @extend_schema(
        summary="Log out: end the session (its refresh token, and its access tokens at once)",
        request=serializers.LogoutInputSerializer,
        responses={205: None, **error_responses(400, 401)},
    )
    def post(self, request):
        data = serializers.LogoutInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # A token a parallel refresh has just spent still names the session to end.
        token = verified_refresh_token(data.validated_data["refresh"])
        if token is None or str(token.get("user_id")) != str(request.user.pk):
            raise ApplicationError("Invalid or expired refresh token.", code="token_not_valid")
        token.blacklist()
        if token.get(SESSION_CLAIM):
            session_revoke(sid=token[SESSION_CLAIM])
        return Response(status=status.HTTP_205_RESET_CONTENT)
