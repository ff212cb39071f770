from brokers.api import schwab_oauth_views, views
from thor.routes import slash_optional

urlpatterns = [
    # Seed 000 contract
    *slash_optional("auth/broker/test-oauth", views.KiteTestOAuthView.as_view(), name="kite-test-oauth"),
    *slash_optional("auth/broker/callback", views.KiteCallbackView.as_view(), name="kite-callback"),
    # Connections
    *slash_optional("brokers/connections", views.ConnectionListView.as_view(), name="broker-connections"),
    *slash_optional(
        "brokers/connections/<int:connection_id>", views.ConnectionDetailView.as_view(), name="broker-connection"
    ),
    *slash_optional("brokers/connections/confirm", views.ConnectionConfirmView.as_view(), name="broker-link-confirm"),
    *slash_optional(
        "brokers/connections/<int:connection_id>/reconnect",
        views.ConnectionReconnectView.as_view(),
        name="broker-connection-reconnect",
    ),
    *slash_optional(
        "brokers/connections/<int:connection_id>/egress",
        views.ConnectionEgressView.as_view(),
        name="broker-connection-egress",
    ),
    *slash_optional("brokers/kite/connect", views.KiteConnectView.as_view(), name="kite-connect"),
    # Seed 002: Schwab OAuth
    *slash_optional(
        "schwab/oauth/start/", schwab_oauth_views.SchwabOAuthStartView.as_view(), name="schwab-oauth-start"
    ),
    *slash_optional(
        "schwab/oauth/callback/", schwab_oauth_views.SchwabOAuthCallbackView.as_view(), name="schwab-oauth-callback"
    ),
    # Seed 003 aliases over the user's Kite account
    *slash_optional("user/profile", views.KiteProfileView.as_view(), name="kite-profile"),
    *slash_optional("market/quote/<int:instrument_token>", views.KiteQuoteView.as_view(), name="kite-quote"),
    *slash_optional("portfolio/holdings", views.KiteHoldingsView.as_view(), name="kite-holdings"),
]
