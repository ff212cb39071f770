from typing import ClassVar

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from identity.models import SocialApp, SocialIdentity, Tenant, User
from identity.services import users_disable


class SocialIdentityInline(admin.TabularInline):
    """The provider accounts that log in as this user; operators may unlink one, not invent one."""

    model = SocialIdentity
    extra = 0
    fields: ClassVar[tuple[str, ...]] = (
        "provider",
        "subject",
        "email",
        "email_verified",
        "display_name",
        "created_at",
        "last_login_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class SocialAppForm(forms.ModelForm):
    # Write-only: the stored secret is never rendered; left blank on a change, it stays as it is.
    client_secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Stored encrypted and never shown. Leave blank to keep the current secret.",
    )

    class Meta:
        model = SocialApp
        fields = ["tenant", "provider", "client_id", "client_secret", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial.pop("client_secret", None)
        self.fields["client_secret"].required = self.instance.pk is None

    def clean_client_secret(self):
        secret = self.cleaned_data.get("client_secret")
        return secret or self.instance.client_secret


@admin.register(SocialApp)
class SocialAppAdmin(admin.ModelAdmin):
    form = SocialAppForm
    list_display = ["tenant", "provider", "client_id", "enabled", "updated_at"]
    list_filter = ["provider", "enabled"]
    search_fields = ["tenant__slug", "client_id"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    # The tenant's order egress (an encrypted proxy URL) is brokers' to show and set: brokers.admin extends this.
    exclude = ["order_egress", "order_egress_probe"]
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
    inlines = [SocialIdentityInline]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Tenancy", {"fields": ["tenant", "role", "marketing_opt_in"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "tenant", "password1", "password2"]})]

    @admin.action(description="Disable selected users (they can no longer log in)")
    def disable_users(self, request, queryset):
        updated = users_disable(users=queryset)
        self.message_user(request, f"Disabled {updated} user(s).")


class ReadOnlyMixin:
    """Viewing only: the change page renders every field read-only."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# simplejwt's own pages show every field of a row, the token column included; these name a token by its jti.
admin.site.unregister(OutstandingToken)
admin.site.unregister(BlacklistedToken)


@admin.register(OutstandingToken)
class OutstandingTokenAdmin(ReadOnlyMixin, admin.ModelAdmin):
    actions = None
    fields: ClassVar[tuple[str, ...]] = ("jti", "user", "created_at", "expires_at")
    list_display = fields
    search_fields = ["jti", "user__email"]
    list_select_related = ["user"]


@admin.register(BlacklistedToken)
class BlacklistedTokenAdmin(ReadOnlyMixin, admin.ModelAdmin):
    actions = None
    fields: ClassVar[tuple[str, ...]] = ("token_jti", "token_user", "token_expires_at", "blacklisted_at")
    list_display = fields
    readonly_fields = fields
    search_fields = ["token__jti", "token__user__email"]
    list_select_related = ["token__user"]

    @admin.display(description="jti", ordering="token__jti")
    def token_jti(self, obj):
        return obj.token.jti

    @admin.display(description="user", ordering="token__user")
    def token_user(self, obj):
        return obj.token.user

    @admin.display(description="expires at", ordering="token__expires_at")
    def token_expires_at(self, obj):
        return obj.token.expires_at
