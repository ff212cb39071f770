"""WebSocket routes, behind JWT sign-in (thor.ws_auth)."""

from channels.routing import URLRouter

from accounts.consumers import OrderUpdatesConsumer
from thor.routes import slash_optional
from thor.ws_auth import JWTAuthMiddleware

order_updates = OrderUpdatesConsumer.as_asgi()

websocket_urlpatterns = [
    *slash_optional("ws/orders", order_updates),
    *slash_optional("ws/orders/<str:account_id>", order_updates),
]

websocket_application = JWTAuthMiddleware(URLRouter(websocket_urlpatterns))
