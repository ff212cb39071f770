"""Operators see apps and connections but never a secret or a token: those fields are not in any form."""

from django.contrib import admin, messages

from brokers import services
from brokers.models import BrokerApp, BrokerConnection


def mask(value: str) -> str:
    return f"••••{value[-4:]}" if value else ""


@admin.register(BrokerApp)
class BrokerAppAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "name", "masked_api_key", "tenant", "owner", "created_at"]
    list_filter = ["kind", "tenant"]
    search_fields = ["name", "owner__email", "tenant__slug"]
    fields = ["kind", "name", "masked_api_key", "redirect_uri", "tenant", "owner", "created_at", "updated_at"]
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
    ]
    list_filter = ["status", "app__kind"]
    search_fields = ["user__email", "broker_user_id"]
    fields = [
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
    ]
    readonly_fields = [name for name in fields if name != "trading_enabled"]
    actions = ["mark_expired", "revoke"]
    list_select_related = ["user", "app"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Broker")
    def broker(self, connection):
        return connection.app.kind

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
