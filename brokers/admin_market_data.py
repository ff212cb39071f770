"""The operator's login of a tenant's market-data session, in the admin of its shared apps
(brokers.services.market_data_login): a button on the app's page and an action on the list start it, a page
reads the signed outcome the callback sends back, and a column shows the session's status and token expiry."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from brokers import health
from brokers.api.market_data_views import result_read
from brokers.models import BrokerApp, BrokerConnection
from brokers.selectors import market_data_sessions
from brokers.services.market_data_login import admin_path_allowed, market_data_login_start, operator_may_log_in
from thor.errors import ApplicationError

# What the operator is told of each outcome (never the broker's words).
OUTCOMES = {
    "connected": (messages.SUCCESS, "The market-data session is logged in."),
    "state_expired": (messages.ERROR, "The login link expired before the broker sent it back; start again."),
    "state_used": (messages.ERROR, "That login link was already used; start again."),
    "state_invalid": (messages.ERROR, "The login link is not valid for this app; start again."),
    "not_allowed": (messages.ERROR, "The operator who started the login may no longer log in this app's session."),
    "denied": (messages.ERROR, "The login was not approved at the broker."),
    "missing_code": (messages.ERROR, "The broker sent no authorization code back."),
    "invalid_code": (messages.ERROR, "The broker's authorization code is not valid."),
    "exchange_failed": (messages.ERROR, "The broker did not accept the login; start again."),
    "conflict": (messages.ERROR, "Another request linked the same session at the same time; check the status."),
}
UNKNOWN_OUTCOME = (messages.ERROR, "The login could not be finished; start again.")


class MarketDataLoginAdminMixin(admin.ModelAdmin):
    actions = ["log_in_market_data"]

    def get_urls(self):
        own = [
            path(
                "<int:app_id>/market-data-login/",
                self.admin_site.admin_view(require_POST(self.market_data_login_view)),
                name="brokers_brokerapp_market_data_login",
            ),
            path(
                "<int:app_id>/market-data-login/done/",
                self.admin_site.admin_view(require_GET(self.market_data_login_done_view)),
                name="brokers_brokerapp_market_data_login_done",
            ),
        ]
        return own + super().get_urls()

    @staticmethod
    def _change_page(app_id: int) -> str:
        return reverse("admin:brokers_brokerapp_change", args=[app_id])

    def _login_redirect(self, request, app: BrokerApp, return_path: str) -> HttpResponseRedirect:
        """To the broker's login, or back to the app's page saying why not."""
        try:
            url = market_data_login_start(app=app, operator=request.user, return_path=return_path)
        except ApplicationError as refused:
            if refused.status_code == 403:
                raise PermissionDenied from None
            self.message_user(request, refused.message, messages.ERROR)
            return HttpResponseRedirect(self._change_page(app.pk))
        response = HttpResponseRedirect(url)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response

    def market_data_login_view(self, request, app_id: int):
        app = get_object_or_404(BrokerApp.objects.select_related("tenant"), pk=app_id)
        if not operator_may_log_in(request.user, app):
            raise PermissionDenied
        return self._login_redirect(request, app, request.POST.get("next") or self._change_page(app.pk))

    def market_data_login_done_view(self, request, app_id: int):
        app = get_object_or_404(BrokerApp, pk=app_id)
        if not operator_may_log_in(request.user, app):
            raise PermissionDenied
        result = result_read(request.GET.get("result", ""), app_id=app.pk)
        if result is None:
            self.message_user(request, "That login result is not valid here.", messages.ERROR)
            return HttpResponseRedirect(self._change_page(app.pk))
        level, text = OUTCOMES.get(str(result.get("outcome")), UNKNOWN_OUTCOME)
        self.message_user(request, text, level)
        target = result.get("next") or ""
        return HttpResponseRedirect(target if admin_path_allowed(target) else self._change_page(app.pk))

    @admin.action(description="Log in the market-data session (one shared app)")
    def log_in_market_data(self, request, queryset):
        apps = list(queryset.select_related("tenant")[:2])
        if len(apps) != 1:
            self.message_user(request, "Choose exactly one shared app.", messages.ERROR)
            return None
        if not operator_may_log_in(request.user, apps[0]):
            raise PermissionDenied
        return self._login_redirect(request, apps[0], self._change_page(apps[0].pk))

    # --- The session's status: read for the whole page at once ---------------------------------

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        changelist.result_list = list(changelist.result_list)
        sessions = market_data_sessions(changelist.result_list)
        read = health.connections_health(list(sessions.values()))
        for app in changelist.result_list:
            app.market_data_read = _session_read(sessions.get(app.pk), read)
        return changelist

    @admin.display(description="Market-data session")
    def market_data_status(self, app):
        if app.owner_id is not None:
            return "-"
        if not hasattr(app, "market_data_read"):
            sessions = market_data_sessions([app])
            app.market_data_read = _session_read(
                sessions.get(app.pk), health.connections_health(list(sessions.values()))
            )
        return app.market_data_read

    @admin.display(description="Market-data session")
    def market_data_session(self, app):
        """The status, and the button that starts the login (it posts the change form's CSRF token)."""
        status = self.market_data_status(app)
        if app.owner_id is not None:
            return status
        url = reverse("admin:brokers_brokerapp_market_data_login", args=[app.pk])
        return format_html(
            '{}<br><button type="submit" formaction="{}" formmethod="post" formnovalidate class="button">'
            "Log in the market-data session</button>",
            status,
            url,
        )


def _session_read(connection: BrokerConnection | None, read: dict[int, health.ConnectionHealth]) -> str:
    if connection is None:
        return "never logged in"
    expires = read[connection.pk].token_expires_at
    calls = read[connection.pk].calls
    until = f"{expires:%Y-%m-%d %H:%M} UTC" if expires else "unknown"
    return f"{connection.get_status_display()}, token expires {until}, calls {calls}"
