from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from brokers.api.zerodha_views import ZerodhaCallbackView, ZerodhaLoginView
from identity.api.social_views import SocialCallbackView, SocialLoginView
from thor.errors import handler404 as api_not_found
from thor.health import HealthView
from thor.metrics_endpoint import metrics_view
from thor.routes import slash_optional
from thor.throttles import AdminLoginRateThrottle, throttle_posts

handler400 = "thor.errors.handler400"
handler403 = "thor.errors.handler403"
handler404 = "thor.errors.handler404"
handler500 = "thor.errors.handler500"

api_patterns = [
    # accounts first: its reads are most of the traffic (see accounts.api.urls), and no route overlaps.
    path("", include("accounts.api.urls")),
    *slash_optional("schema", SpectacularAPIView.as_view(), name="schema"),
    *slash_optional("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Seed 004's social login: Zerodha is the tenant's Kite app (brokers), the others are identity's.
    *slash_optional("<slug:agent_id>/v1/auth/oauth/zerodha/login", ZerodhaLoginView.as_view(), name="zerodha-login"),
    *slash_optional(
        "<slug:agent_id>/v1/auth/oauth/zerodha/callback", ZerodhaCallbackView.as_view(), name="zerodha-callback"
    ),
    *slash_optional(
        "<slug:agent_id>/v1/auth/oauth/<str:provider>/login", SocialLoginView.as_view(), name="social-login"
    ),
    *slash_optional(
        "<slug:agent_id>/v1/auth/oauth/<str:provider>/callback", SocialCallbackView.as_view(), name="social-callback"
    ),
    path("", include("identity.api.urls")),
    path("", include("brokers.api.urls")),
    path("", include("analytics.api.urls")),
    *slash_optional("health", HealthView.as_view(), name="health"),
    # Unknown /api/ paths answer the JSON error even with DEBUG on (the SPA parses every answer).
    re_path(r"^", csrf_exempt(api_not_found)),
]

urlpatterns = [
    path("api/", include(api_patterns)),
    # Before the admin's own routes: the same login view, with its password guesses throttled per IP.
    path("admin/login/", throttle_posts(admin.site.login, AdminLoginRateThrottle)),
    path("admin/", admin.site.urls),
    # The name django-prometheus's own URLconf gives it; the view asks for THOR_METRICS_TOKEN (thor.metrics_endpoint).
    path("metrics", metrics_view, name="prometheus-django-metrics"),
]
