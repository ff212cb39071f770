import logging
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponseRedirect
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers import health, oauth_state, selectors, services
from brokers.adapters.base import BrokerAdapter
from brokers.api import market_data_views, serializers, zerodha_views
from thor import snapshots
from thor.errors import ApplicationError, error_responses
from thor.throttles import OAuthStartRateThrottle
from thor.views import LOGIN_LINK_PAGE, BrowserRedirectView, LoginLinkInvalid

logger = logging.getLogger("thor.brokers")

START_ERRORS = error_responses(400, 401, 429)
READ_ERRORS = error_responses(401, 404, 409, 503)


def query_and_body(request) -> dict:
    """Seed 000 sends its fields in the query string or the body; the body wins.

    Its FastAPI version takes api_secret as a query parameter, so Thor must too: that is why the
    ASGI server runs without an access log (it would write query strings, secrets included).
    """
    body = request.data
    if not isinstance(body, Mapping):
        raise ApplicationError("The body must be an object.", code="parse_error")
    return {**request.query_params.dict(), **(body.dict() if hasattr(body, "dict") else body)}


def _connection_or_404(request, connection_id: int):
    connection = selectors.connection_get(user=request.user, connection_id=connection_id)
    if connection is None:
        raise ApplicationError("Connection not found.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
    return connection


class KiteTestOAuthView(APIView):
    throttle_classes = [OAuthStartRateThrottle]

    @extend_schema(
        summary="Seed 000: store your own Kite app and get its login URL",
        request=serializers.KiteTestOAuthInputSerializer,
        responses={200: serializers.KiteTestOAuthOutputSerializer, **START_ERRORS},
    )
    def post(self, request):
        data = serializers.KiteTestOAuthInputSerializer(data=query_and_body(request))
        data.is_valid(raise_exception=True)
        oauth_url = services.kite_user_app_connect_start(
            user=request.user,
            api_key=data.validated_data["api_key"],
            api_secret=data.validated_data["api_secret"],
            frontend_url=data.validated_data.get("frontend_url"),
        )
        body = {
            "status": "success",
            "message": "Kite app stored; open oauth_url to log in.",
            "oauth_url": oauth_url,
            "redirect_url": f"{settings.THOR_PUBLIC_URL}/api/auth/broker/callback",
        }
        return Response(serializers.KiteTestOAuthOutputSerializer(body).data)


class KiteConnectView(APIView):
    throttle_classes = [OAuthStartRateThrottle]

    @extend_schema(
        summary="Link a Kite account through the tenant's Kite app",
        request=serializers.FrontendUrlInputSerializer,
        responses={200: serializers.AuthorizationUrlOutputSerializer, **START_ERRORS, **error_responses(404)},
    )
    def post(self, request):
        data = serializers.FrontendUrlInputSerializer(data=query_and_body(request))
        data.is_valid(raise_exception=True)
        oauth_url = services.kite_tenant_app_connect_start(
            user=request.user, frontend_url=data.validated_data.get("frontend_url")
        )
        return Response(serializers.AuthorizationUrlOutputSerializer({"oauth_url": oauth_url}).data)


def _to_frontend(origin: str, **params) -> HttpResponseRedirect:
    response = HttpResponseRedirect(f"{origin}/broker-callback?{urlencode({**params, 'parent_origin': origin})}")
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


class KiteCallbackView(BrowserRedirectView):
    """Kite sends the browser here; only the signed state says who it is and where it goes back to."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Kite login callback: link the account, then redirect to the SPA",
        parameters=[
            OpenApiParameter("request_token", str),
            OpenApiParameter("action", str),
            OpenApiParameter("status", str),
            OpenApiParameter("state", str),
        ],
        description=(
            "Every outcome redirects to `{frontend}/broker-callback` (`status=success|confirm|error`), a login "
            "link that is too old or already used included (`error=state_expired|state_used`); a state Thor "
            "did not sign, or whose origin the tenant dropped, gets a 400 HTML page. An operator's market-data "
            "login (its state says so) ends on the admin instead, and only in that operator's admin session: "
            "another browser gets a 403 HTML page."
        ),
        responses={302: None, 400: LOGIN_LINK_PAGE, 403: market_data_views.NOT_THE_OPERATOR_PAGE},
    )
    def get(self, request):
        if zerodha_views.is_zerodha_login(request):
            # The same registered redirect URL serves "log in with Zerodha": its state is a login's.
            return zerodha_views.zerodha_login_callback_from_kite(request)
        try:
            state = oauth_state.consume(request.query_params.get("state", ""))
        except oauth_state.StateInvalid as invalid:
            if market_data_views.is_market_data(invalid.state):
                assert invalid.state is not None
                return market_data_views.back_to_admin(invalid.state, invalid.code)
            # Too old or used: back to the frontend it was signed for, which says so; forged: a page.
            if invalid.state is None or not oauth_state.origin_allowed(invalid.state):
                raise LoginLinkInvalid from None
            return _to_frontend(invalid.state.frontend_origin, status="error", error=invalid.code)
        if market_data_views.is_market_data(state):
            # An operator's login of the tenant's market-data session: back to the admin, never the SPA.
            return market_data_views.market_data_callback(request, state, request.query_params)
        if not oauth_state.origin_allowed(state):
            raise LoginLinkInvalid
        try:
            connection = services.kite_callback_complete(state=state, params=request.query_params)
        except services.CallbackFailed as failure:
            return _to_frontend(state.frontend_origin, status="error", error=failure.code)
        except services.LinkAwaitsConfirmation as parked:
            return _to_frontend(state.frontend_origin, status="confirm", code=parked.code)
        except Exception:
            logger.exception("Kite callback failed")
            return _to_frontend(state.frontend_origin, status="error", error="server_error")
        return _to_frontend(state.frontend_origin, status="success", user_id=connection.broker_user_id)


class ConnectionListView(APIView):
    @extend_schema(
        summary="Your broker connections and their health (never a token)",
        responses={200: serializers.ConnectionOutputSerializer(many=True), **error_responses(401)},
    )
    def get(self, request):
        connections = list(selectors.connection_list(user=request.user))
        context = {"health": health.connections_health(connections)}
        return Response(serializers.ConnectionOutputSerializer(connections, many=True, context=context).data)


class ConnectionDetailView(APIView):
    @extend_schema(
        summary="Unlink: end the session at the broker, wipe the tokens, keep the record",
        responses={200: serializers.ConnectionOutputSerializer, **error_responses(401, 404)},
    )
    def delete(self, request, connection_id: int):
        connection = _connection_or_404(request, connection_id)
        services.connection_revoke(connection=connection)
        return Response(serializers.ConnectionOutputSerializer(connection).data)


class ConnectionEgressView(APIView):
    @extend_schema(
        summary="Set the connection's order egress: the proxy on your registered static IP (write-only)",
        description=(
            "Kite takes orders only from the static IP on the user's developer profile. Thor sends this "
            "connection's orders (place, modify, cancel) through this HTTP CONNECT proxy, which must run on that "
            "address; reads go direct. The URL is stored encrypted and never shown again: the connection says "
            "`order_egress: set` and `health.egress` shows the probe Thor made through it."
        ),
        request=serializers.OrderEgressInputSerializer,
        responses={200: serializers.ConnectionOutputSerializer, **error_responses(400, 401, 404)},
    )
    def put(self, request, connection_id: int):
        connection = _connection_or_404(request, connection_id)
        data = serializers.OrderEgressInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.connection_order_egress_set(connection=connection, url=data.validated_data["url"])
        return Response(serializers.ConnectionOutputSerializer(connection).data)

    @extend_schema(
        summary="Remove the connection's order egress",
        responses={200: serializers.ConnectionOutputSerializer, **error_responses(401, 404)},
    )
    def delete(self, request, connection_id: int):
        connection = _connection_or_404(request, connection_id)
        services.order_egress_clear(holder=connection)
        return Response(serializers.ConnectionOutputSerializer(connection).data)


class ConnectionConfirmView(APIView):
    @extend_schema(
        summary="Finish a broker link with the code the callback sent (tenants with link confirmation)",
        description=(
            "Only the user who started the link can finish it, so a login link forwarded to someone "
            "else cannot attach their broker account to the sender. The code works once, for 10 minutes."
        ),
        request=serializers.LinkConfirmInputSerializer,
        responses={200: serializers.ConnectionOutputSerializer, **error_responses(400, 401, 404)},
    )
    def post(self, request):
        data = serializers.LinkConfirmInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        connection = services.connection_link_confirm(user=request.user, code=data.validated_data["code"])
        return Response(serializers.ConnectionOutputSerializer(connection).data)


class ConnectionReconnectView(APIView):
    throttle_classes = [OAuthStartRateThrottle]

    @extend_schema(
        summary="A new login URL that repairs this connection",
        request=serializers.FrontendUrlInputSerializer,
        responses={200: serializers.AuthorizationUrlOutputSerializer, **START_ERRORS, **error_responses(404)},
    )
    def post(self, request, connection_id: int):
        connection = _connection_or_404(request, connection_id)
        data = serializers.FrontendUrlInputSerializer(data=query_and_body(request))
        data.is_valid(raise_exception=True)
        oauth_url = services.connection_reconnect_start(
            connection=connection, frontend_url=data.validated_data.get("frontend_url")
        )
        return Response(serializers.AuthorizationUrlOutputSerializer({"oauth_url": oauth_url}).data)


# --- Seed 003: thin aliases over the user's Kite account ---------------------------------------
# They answer Kite's own payloads (the adapter keeps them in each neutral type's `raw`), because
# seed 003's clients read kiteconnect's dicts; Thor's `source` and `as_of` sit beside them.


def _kite_read(request, what: str, call: Callable[[BrokerAdapter], object]) -> snapshots.LiveRead:
    connection = selectors.kite_connection_get(user=request.user)
    if connection is None:
        raise ApplicationError(
            "No Kite account is linked.", code="no_kite_account", status_code=status.HTTP_404_NOT_FOUND
        )
    key = snapshots.key(request.user.tenant.slug, f"connection-{connection.pk}", what)
    return snapshots.read_through(key, lambda: services.broker_call(connection, call))


def _live(read: snapshots.LiveRead, data) -> dict:
    return {"data": data, "source": read.source, "as_of": read.as_of}


class KiteProfileView(APIView):
    @extend_schema(
        summary="Seed 003: the Kite profile, as Kite answers it",
        responses={200: serializers.KiteProfileOutputSerializer, **READ_ERRORS},
    )
    def get(self, request):
        read = _kite_read(request, "profile", lambda adapter: adapter.profile())
        return Response(serializers.KiteProfileOutputSerializer(_live(read, read.data.raw)).data)


class KiteQuoteView(APIView):
    @extend_schema(
        summary="Seed 003: Kite's quote for one instrument token, keyed by that token as Kite keys it",
        responses={200: serializers.KiteQuoteOutputSerializer, **READ_ERRORS},
    )
    def get(self, request, instrument_token: int):
        if not 1 <= instrument_token < 2**32:
            raise ApplicationError("Unknown instrument.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
        name = str(instrument_token)
        read = _kite_read(request, f"quote:{name}", lambda adapter: adapter.quotes([name]))
        if name not in read.data:
            raise ApplicationError("Unknown instrument.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
        return Response(serializers.KiteQuoteOutputSerializer(_live(read, {name: read.data[name].raw})).data)


class KiteHoldingsView(APIView):
    @extend_schema(
        summary="Seed 003: holdings of the Kite account, as Kite answers them",
        responses={200: serializers.KiteHoldingsOutputSerializer, **READ_ERRORS},
    )
    def get(self, request):
        read = _kite_read(request, "holdings", lambda adapter: adapter.holdings())
        return Response(serializers.KiteHoldingsOutputSerializer(_live(read, [item.raw for item in read.data])).data)
