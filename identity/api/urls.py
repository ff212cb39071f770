from identity.api import social_views, views
from thor.routes import slash_optional

urlpatterns = [
    *slash_optional("auth/register", views.RegisterView.as_view(), name="auth-register"),
    *slash_optional("auth/token", views.TokenView.as_view(), name="auth-token"),
    *slash_optional("auth/token/refresh", views.TokenRefresh.as_view(), name="auth-token-refresh"),
    *slash_optional("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    # Social login (seed 004): the one-time code of `code` delivery, and the caller's linked identities
    *slash_optional("auth/exchange", social_views.CodeExchangeView.as_view(), name="auth-exchange"),
    *slash_optional("auth/identities", social_views.IdentityListView.as_view(), name="auth-identities"),
    *slash_optional(
        "auth/identities/<int:identity_id>", social_views.IdentityDetailView.as_view(), name="auth-identity"
    ),
]
