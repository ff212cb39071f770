from identity.api import views
from thor.routes import slash_optional

urlpatterns = [
    *slash_optional("auth/register", views.RegisterView.as_view(), name="auth-register"),
    *slash_optional("auth/token", views.TokenView.as_view(), name="auth-token"),
    *slash_optional("auth/token/refresh", views.TokenRefresh.as_view(), name="auth-token-refresh"),
    *slash_optional("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
]
