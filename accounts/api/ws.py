"""`GET /api/ws/status` (seed 001's `/ws/status`): where the order WebSockets are and whether they can deliver."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from thor.errors import error_responses
from thor.health import run_check

ENDPOINTS = ["/ws/orders", "/ws/orders/{account_id}"]


class WebSocketStatusView(APIView):
    @extend_schema(
        summary="The order WebSocket endpoints and whether the channel layer delivers",
        description=(
            "Connect with the access token as the subprotocol pair `bearer`, `<token>` or as `?token=`. "
            "Close codes: 4401 no valid token, 4404 not your account, 4429 too many frames. "
            'Messages: `{"type": "order_update", "account_id": 1, "data": <order>}` and '
            '`{"type": "position_update", "account_id": 1}` after a fill; send `ping` for `pong`.'
        ),
        responses={
            200: inline_serializer(
                "WebSocketStatus",
                {
                    "channel_layer": serializers.CharField(help_text="`ok` or `error: <class>`."),
                    "endpoints": serializers.ListField(child=serializers.CharField()),
                },
            ),
            **error_responses(401),
        },
    )
    def get(self, request):
        return Response({"channel_layer": run_check("channel_layer"), "endpoints": ENDPOINTS})
