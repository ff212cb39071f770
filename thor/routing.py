"""WebSocket routes; the accounts app adds order streams here."""

websocket_urlpatterns = []
