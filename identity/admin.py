from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from identity.models import Tenant, User


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_default", "trading_enabled", "currency", "paper_starting_cash"]
    search_fields = ["slug", "name"]
    list_filter = ["trading_enabled", "is_default"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "tenant", "role", "is_active", "date_joined"]
    list_filter = ["tenant", "role", "is_active"]
    search_fields = ["email"]
    actions = ["disable_users"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Tenancy", {"fields": ["tenant", "role", "marketing_opt_in"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "tenant", "password1", "password2"]})]

    @admin.action(description="Disable selected users (they can no longer log in)")
    def disable_users(self, request, queryset):
        updated = queryset.update(is_active=False)
        self.message_user(request, f"Disabled {updated} user(s).")
