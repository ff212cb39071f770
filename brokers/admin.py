"""Operators see apps and connections but never a secret or a token: those fields are not in any form."""

from typing import ClassVar

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from brokers import health, services
from brokers.models import BrokerApp, BrokerConnection


def mask(value: str) -> str:
    return f"••••{value[-4:]}" if value else ""


@admin.register(BrokerApp)
class BrokerAppAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "name", "masked_api_key", "tenant", "owner", "created_at"]
    list_filter = ["kind", "tenant"]
    search_fields = ["name", "owner__email", "tenant__slug"]
    fields: ClassVar[tuple[str, ...]] = (
        "kind",
        "name",
        "masked_api_key",
        "redirect_uri",
        "tenant",
        "owner",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    raw_id_fields = ["owner"]

    @admin.display(description="API key")
    def masked_api_key(self, app):
        return mask(app.api_key)

    def has_add_permission(self, request):
        # Adding an app means typing its secret; that happens through the API, not this form.
        return False


@admin.register(BrokerConnection)
class BrokerConnectionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "user",
        "broker",
        "broker_user_id",
        "status",
        "access_expires_at",
        "last_sync_at",
        "last_error",
        "calls",
        "last_call_error",
        "attention_orders",
    ]
    list_filter = ["status", "app__kind"]
    search_fields = ["user__email", "broker_user_id"]
    fields: ClassVar[tuple[str, ...]] = (
        "user",
        "app",
        "status",
        "broker_user_id",
        "access_expires_at",
        "refresh_expires_at",
        "last_sync_at",
        "last_error",
        "trading_enabled",
        "created_at",
        "updated_at",
        "health_summary",
    )
    readonly_fields = [name for name in fields if name != "trading_enabled"]
    actions = ["mark_expired", "revoke"]
    list_select_related = ["user", "app"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Broker")
    def broker(self, connection):
        return connection.app.kind

    # --- Health: read for the whole page at once (brokers.health), then shown column by column ---

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        changelist.result_list = list(changelist.result_list)
        read = health.connections_health(changelist.result_list)
        for connection in changelist.result_list:
            connection.health_read = read[connection.pk]
        return changelist

    @staticmethod
    def _health(connection) -> health.ConnectionHealth:
        if not hasattr(connection, "health_read"):
            connection.health_read = health.connection_health(connection)
        return connection.health_read

    @admin.display(description="Calls")
    def calls(self, connection):
        return self._health(connection).calls

    @admin.display(description="Last call error")
    def last_call_error(self, connection):
        error = self._health(connection).last_error
        return f"{error.code} at {error.at:%Y-%m-%d %H:%M:%S} UTC" if error else "-"

    @admin.display(description="Unknown / needs review")
    def attention_orders(self, connection):
        orders = self._health(connection).orders
        return f"{orders.unknown} / {orders.needs_review}" if orders else "-"

    @admin.display(description="Health")
    def health_summary(self, connection):
        read = self._health(connection)
        error = read.last_error
        rows = [
            ("Calls", read.calls),
            ("Last success", read.last_success_at or "-"),
            ("Last error", f"{error.at} {error.code}: {error.message}" if error else "-"),
            ("Token expires", read.token_expires_at or "-"),
            ("Unknown orders", read.orders.unknown if read.orders else "-"),
            ("Orders needing review", read.orders.needs_review if read.orders else "-"),
            *(
                (
                    f"Rate budget {budget.bucket}",
                    f"{'?' if budget.left is None else budget.left} of {budget.capacity} per {budget.per_seconds} s",
                )
                for budget in read.rate_budget
            ),
        ]
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.action(description="Mark expired (the user must log in again)")
    def mark_expired(self, request, queryset):
        for connection in queryset:
            services.connection_mark_expired(connection=connection, error_code="expired_by_operator")
        self.message_user(request, f"{queryset.count()} connection(s) processed.", messages.SUCCESS)

    @admin.action(description="Revoke (end the broker session, wipe tokens)")
    def revoke(self, request, queryset):
        for connection in queryset:
            services.connection_revoke(connection=connection)
        self.message_user(request, f"{queryset.count()} connection(s) revoked.", messages.SUCCESS)
