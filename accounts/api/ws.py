"""The order WebSocket's REST side: `POST /api/ws/ticket` (a one-time sign-in for one socket) and
`GET /api/ws/status` (seed 001's `/ws/status`: where the sockets are, how many are open, whether the
channel layer delivers)."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.consumers import TENANT_WIDE_ROLES
from accounts.ws_connections import KINDS, connection_counts, user_connection_count
from identity.models import User
from thor.errors import error_responses
from thor.health import run_check
from thor.ws_auth import ws_ticket_issue

ENDPOINTS = ["/ws/orders", "/ws/orders/{account_id}"]

SOCKET_GUIDE = (
    "Connect with the ticket from `POST /api/ws/ticket` as the subprotocol pair `ticket`, `<ticket>` (kept out "
    "of URLs and logs; preferred) or as `?ticket=`, or with the access token as the pair `bearer`, `<token>` or "
    "as `?token=`. Close codes: 4401 no valid sign-in, 4404 not an "
    "account you may follow, 4409 too many open sockets, 4429 too many frames. Every stream message is "
    '`{"type": "order_update" | "position_update" | "funds_update", "account_id", "seq", "as_of", "data"}`, '
    "`seq` counting the account's messages one by one; after a gap or a reconnect send "
    '`{"action": "resync", "account_id": 1, "since_seq": N}`. Heartbeat: `ping` -> `{"type": "pong"}`.'
)


class WebSocketTicketView(APIView):
    @extend_schema(
        summary="A one-time ticket to open an order WebSocket",
        description=(
            "The ticket opens one socket (`ws://<host>/ws/orders/primary?ticket=<ticket>`) within `expires_in` "
            "seconds, once; the socket closes with 4401 when the access token used here expires. " + SOCKET_GUIDE
        ),
        request=None,
        responses={
            201: inline_serializer(
                "WebSocketTicket",
                {
                    "ticket": serializers.CharField(),
                    "expires_in": serializers.IntegerField(help_text="Seconds the ticket can still be used."),
                },
            ),
            **error_responses(401, 503),
        },
    )
    def post(self, request):
        claims = getattr(request.auth, "payload", {})
        ticket = ws_ticket_issue(user=request.user, sign_in_expires_at=claims.get("exp"), sign_in_claims=claims)
        return Response({"ticket": ticket, "expires_in": settings.THOR_WS_TICKET_SECONDS}, status=201)


class WebSocketStatusView(APIView):
    @extend_schema(
        summary="The order WebSocket endpoints, open sockets and whether the channel layer delivers",
        description=(
            "Everyone sees their own open sockets. Tenant admins also see their tenant's sockets by kind "
            "(`account`: /ws/orders/{account_id}, `all`: /ws/orders) and the channel layer's health; ops "
            "see every tenant's. " + SOCKET_GUIDE
        ),
        responses={
            200: inline_serializer(
                "WebSocketStatus",
                {
                    "endpoints": serializers.ListField(child=serializers.CharField()),
                    "your_connections": serializers.IntegerField(),
                    "connections_scope": serializers.ChoiceField(
                        choices=("yours", "tenant", "all"), help_text="Whose sockets `connections` counts."
                    ),
                    "connections": inline_serializer(
                        "WebSocketConnections",
                        {kind: serializers.IntegerField() for kind in KINDS},
                        allow_null=True,
                    ),
                    "channel_layer": serializers.CharField(
                        allow_null=True, help_text="`ok` or `error: <class>`; null for a plain user."
                    ),
                },
            ),
            **error_responses(401),
        },
    )
    def get(self, request):
        user = request.user
        body = {"endpoints": ENDPOINTS, "your_connections": user_connection_count(user=user)}
        if user.role not in TENANT_WIDE_ROLES:
            return Response({**body, "connections_scope": "yours", "connections": None, "channel_layer": None})
        tenant_id = None if user.role == User.Role.OPS else user.tenant_id
        return Response(
            {
                **body,
                "connections_scope": "all" if tenant_id is None else "tenant",
                "connections": connection_counts(tenant_id=tenant_id),
                "channel_layer": run_check("channel_layer"),
            }
        )
