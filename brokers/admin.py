"""Operators see apps and connections but never a secret or a token: those fields are not in any form."""

from typing import ClassVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from brokers import health, services
from brokers.admin_market_data import MarketDataLoginAdminMixin
from brokers.egress import order_egress_clean
from brokers.models import BrokerApp, BrokerConnection
from identity.admin import TenantAdmin
from identity.models import Tenant


def mask(value: str) -> str:
    return f"••••{value[-4:]}" if value else ""


class OrderEgressForm(forms.ModelForm):
    """A write-only order egress (brokers.egress): the stored URL is never rendered, a refused one is not
    repeated, and a blank field keeps what is stored. Used for connections, users' apps and tenants."""

    order_egress = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        max_length=500,
        label="Order egress",
        help_text=(
            "http(s)://[user:password@]host:port of the CONNECT proxy on the registered static IP. Stored "
            "encrypted and never shown; leave blank to keep the current one. Saved with a probe through it."
        ),
    )
    clear_order_egress = forms.BooleanField(required=False, label="Remove the order egress")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial.pop("order_egress", None)

    def clean_order_egress(self):
        url = self.cleaned_data.get("order_egress")
        if not url:
            return self.instance.order_egress if self.instance.pk else ""
        try:
            return order_egress_clean(url)
        except ValidationError as error:
            raise forms.ValidationError(error.message_dict["url"]) from None

    def clean(self):
        cleaned = super().clean()
        if cleaned is not None and cleaned.get("clear_order_egress"):
            cleaned["order_egress"] = ""
        return cleaned

    @property
    def order_egress_changed(self) -> bool:
        return "order_egress" in self.changed_data or bool(self.cleaned_data.get("clear_order_egress"))


def order_egress_saved(form: OrderEgressForm, holder) -> None:
    """After the admin saved `holder`: probe a new egress (or forget the probe of a removed one)."""
    if form.order_egress_changed:
        services.order_egress_reprobe(holder=holder)


def order_egress_summary(holder) -> str:
    if not holder.order_egress:
        return "not set"
    probe = holder.order_egress_probe or {}
    if "ok" not in probe:
        return "set, never probed"
    verdict = "probe ok" if probe["ok"] else f"probe failed: {probe.get('error')}"
    return f"set, {verdict} ({probe.get('checked_at')})"


class BrokerAppForm(OrderEgressForm):
    class Meta:
        model = BrokerApp
        fields = ["order_egress"]

    def clean_order_egress(self):
        url = super().clean_order_egress()
        if url and not self.instance.owner_id:
            # A shared app's egress would send unrelated users' orders from one address: the rule forbids it.
            raise forms.ValidationError("Only a user's own app takes an order egress; a tenant sets its own.")
        return url


class BrokerConnectionForm(OrderEgressForm):
    class Meta:
        model = BrokerConnection
        fields = ["trading_enabled", "order_egress"]


@admin.register(BrokerApp)
class BrokerAppAdmin(MarketDataLoginAdminMixin, admin.ModelAdmin):
    form = BrokerAppForm
    list_display = ["id", "kind", "name", "masked_api_key", "tenant", "owner", "market_data_status", "created_at"]
    list_filter = ["kind", "tenant"]
    search_fields = ["name", "owner__email", "tenant__slug"]
    readonly_fields: ClassVar[tuple[str, ...]] = (
        "kind",
        "name",
        "masked_api_key",
        "redirect_uri",
        "tenant",
        "owner",
        "created_at",
        "updated_at",
        "order_egress_status",
        "market_data_session",
    )
    fields: ClassVar[tuple[str, ...]] = (*readonly_fields, "order_egress", "clear_order_egress")
    raw_id_fields = ["owner"]

    @admin.display(description="Order egress")
    def order_egress_status(self, app):
        return order_egress_summary(app)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        order_egress_saved(form, obj)

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
        "price_bands",
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
        "order_egress",
        "clear_order_egress",
        "created_at",
        "updated_at",
        "health_summary",
    )
    form = BrokerConnectionForm
    readonly_fields = [name for name in fields if name not in ("trading_enabled", "order_egress", "clear_order_egress")]
    actions = ["mark_expired", "revoke", "probe_egress"]
    list_select_related = ["user", "app__tenant"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        order_egress_saved(form, obj)

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

    @admin.display(description="Price bands")
    def price_bands(self, connection):
        return self._health(connection).price_bands or "-"

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
            ("Order egress", _egress_line(read.egress)),
            ("Price bands", read.price_bands or "-"),
            *(
                (
                    f"Rate budget {budget.bucket}",
                    f"{'?' if budget.left is None else budget.left} of {budget.capacity} per {budget.per_seconds} s",
                )
                for budget in read.rate_budget
            ),
        ]
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.action(description="Probe the order egress again")
    def probe_egress(self, request, queryset):
        for connection in queryset.exclude(order_egress=""):
            services.order_egress_reprobe(holder=connection)
        self.message_user(request, "Probed.", messages.SUCCESS)

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


def _egress_line(egress: health.EgressHealth) -> str:
    if egress.source is None:
        return "none (orders refused: static IP required)" if egress.required else "none"
    if egress.ok is None:
        return f"{egress.source}'s, never probed"
    return f"{egress.source}'s, probe {'ok' if egress.ok else 'failed: ' + egress.error} at {egress.checked_at}"


class TenantEgressForm(OrderEgressForm):
    class Meta:
        model = Tenant
        exclude = ["order_egress_probe"]  # noqa: DJ006 (every other tenant field stays as identity shows it)


class PriceBandsFilter(admin.SimpleListFilter):
    """Tenants whose live Kite orders go unchecked: live Kite accounts and no Kite market-data connection."""

    title = "Kite price bands"
    parameter_name = "price_bands"

    def lookups(self, request, model_admin):
        return [
            (health.PriceBands.UNCHECKED_NO_MARKET_DATA, "Unchecked: live Kite accounts, no market data"),
            (health.PriceBands.CHECKED, "Checked"),
        ]

    def queryset(self, request, queryset):
        if health.price_bands_watch is None or self.value() not in (
            health.PriceBands.CHECKED,
            health.PriceBands.UNCHECKED_NO_MARKET_DATA,
        ):
            return queryset
        checked = self.value() == health.PriceBands.CHECKED
        return queryset.filter(banded_accounts=True, kite_market_data=checked)


# The tenant admin is identity's; its order egress (for tenants that are registered algo providers) is this app's.
admin.site.unregister(Tenant)


@admin.register(Tenant)
class TenantWithEgressAdmin(TenantAdmin):
    form = TenantEgressForm
    exclude = ["order_egress_probe"]
    readonly_fields = ["order_egress_status"]
    list_display = [*TenantAdmin.list_display, "kite_price_bands"]
    list_filter = [*TenantAdmin.list_filter, PriceBandsFilter]

    def get_queryset(self, request):
        # Two EXISTS in the list's one query (brokers.health.PriceBandsWatch), never a query per tenant.
        tenants = super().get_queryset(request)
        watch = health.price_bands_watch
        if watch is None:
            return tenants
        return tenants.annotate(
            banded_accounts=watch.tenant_has_banded_accounts(), kite_market_data=watch.tenant_has_market_data()
        )

    @admin.display(description="Kite price bands")
    def kite_price_bands(self, tenant):
        if not getattr(tenant, "banded_accounts", False):
            return "-"  # no live Kite accounts: nothing to check
        return health.PriceBands.CHECKED if tenant.kite_market_data else health.PriceBands.UNCHECKED_NO_MARKET_DATA

    @admin.display(description="Order egress")
    def order_egress_status(self, tenant):
        return order_egress_summary(tenant)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        order_egress_saved(form, obj)
