from accounts.api import schwab_views, views
from accounts.api.ws import WebSocketStatusView, WebSocketTicketView
from thor.routes import slash_optional

ACCOUNT = "accounts/<str:account_id>"

urlpatterns = [
    # The reads an SPA polls come first: Django tries patterns in order, and every miss costs.
    *slash_optional(f"{ACCOUNT}/positions", views.PositionsView.as_view(), name="account-positions"),
    *slash_optional(f"{ACCOUNT}/holdings", views.HoldingsView.as_view(), name="account-holdings"),
    *slash_optional(f"{ACCOUNT}/funds", views.FundsView.as_view(), name="account-funds"),
    *slash_optional(f"{ACCOUNT}/orders", views.OrdersView.as_view(), name="account-orders"),
    *slash_optional("auth/me", views.MeView.as_view(), name="auth-me"),
    *slash_optional("brokers/kite/postback", views.KitePostbackView.as_view(), name="kite-postback"),
    *slash_optional("accounts", views.AccountListView.as_view(), name="account-list"),
    *slash_optional(ACCOUNT, views.AccountDetailView.as_view(), name="account-detail"),
    *slash_optional(f"{ACCOUNT}/sync", views.AccountSyncView.as_view(), name="account-sync"),
    *slash_optional(f"{ACCOUNT}/reset", views.AccountResetView.as_view(), name="account-reset"),
    *slash_optional(f"{ACCOUNT}/orders/<int:order_id>", views.OrderDetailView.as_view(), name="account-order"),
    *slash_optional(f"{ACCOUNT}/batch-orders", views.BatchOrdersView.as_view(), name="account-batch-orders"),
    # Seed 002: Schwab accounts
    *slash_optional("schwab/accounts/", schwab_views.SchwabAccountsView.as_view(), name="schwab-accounts"),
    *slash_optional("schwab/account/summary/", schwab_views.SchwabSummaryView.as_view(), name="schwab-summary"),
    *slash_optional("schwab/account/positions/", schwab_views.SchwabPositionsView.as_view(), name="schwab-positions"),
    *slash_optional(
        "schwab/accounts/<str:account_id>/balances/",
        schwab_views.SchwabLegacyBalancesView.as_view(),
        name="schwab-legacy-balances",
    ),
    *slash_optional(
        "schwab/accounts/<str:account_id>/positions/",
        schwab_views.SchwabLegacyPositionsView.as_view(),
        name="schwab-legacy-positions",
    ),
    *slash_optional("ws/status", WebSocketStatusView.as_view(), name="ws-status"),
    *slash_optional("ws/ticket", WebSocketTicketView.as_view(), name="ws-ticket"),
]
