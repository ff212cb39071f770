from django.contrib import admin, messages

from accounts.models import AuditChainHead, BrokerOrderId, Order, OrderEvent, PaperPosition, TradingAccount
from accounts.placement import live_order_settle
from identity.admin import ReadOnlyMixin, UserAdmin
from identity.models import User
from thor import money


# The money policy (thor.money) in the admin too: operators see the numbers the API shows.
@admin.display(description="quantity", ordering="quantity")
def whole_quantity(obj):
    return money.quantity(obj.quantity)


@admin.display(description="average price", ordering="average_price")
def policy_average_price(obj):
    return money.price_text(obj.average_price)


@admin.display(description="realised P&L", ordering="realised_pnl")
def policy_realised_pnl(obj):
    return money.money_text(obj.realised_pnl)


@admin.display(description="cash", ordering="cash")
def policy_cash(obj):
    return money.money_text(obj.cash)


class OrderEventInline(ReadOnlyMixin, admin.TabularInline):
    model = OrderEvent
    extra = 0
    fields = ["created_at", "kind", "actor", "request_id", "before", "after", "broker_response"]
    readonly_fields = fields


class PaperPositionInline(admin.TabularInline):
    model = PaperPosition
    extra = 0
    fields = ["exchange", "symbol", "product", whole_quantity, "multiplier", policy_average_price, policy_realised_pnl]
    readonly_fields = fields
    can_delete = False


@admin.register(TradingAccount)
class TradingAccountAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "mode", "display_name", "currency", policy_cash, "is_primary", "created_at"]
    list_filter = ["mode", "is_primary"]
    search_fields = ["user__email", "display_name", "broker_account_id"]
    raw_id_fields = ["user", "connection"]
    readonly_fields = ["cash", "created_at", "updated_at"]
    inlines = [PaperPositionInline]


class BrokerOrderIdInline(ReadOnlyMixin, admin.TabularInline):
    """Every broker id the order has had: a Schwab replace leaves the old one superseded."""

    model = BrokerOrderId
    extra = 0
    fields = ["broker_order_id", "superseded_at", "created_at"]
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "id", "account", "side", whole_quantity, "exchange", "symbol", "order_type", "status", "broker_order_id",
        "algo_id", "parent", "created_at",
    ]  # fmt: skip
    # "Needs review" in the status filter is the operator's queue of placements the book could not settle.
    list_filter = ["status", "side", "order_type", "exchange"]
    # An exchange's audit asks for the orders of one algo id: search by it.
    search_fields = ["client_order_id", "broker_order_id", "symbol", "algo_id", "account__user__email"]
    raw_id_fields = ["account"]
    readonly_fields = [field.name for field in Order._meta.fields]
    inlines = [BrokerOrderIdInline, OrderEventInline]

    actions = ["settle_from_the_book"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # order rows are the record of what was sent: never deleted

    @admin.action(description="Read the broker's order book now for the selected unconfirmed orders")
    def settle_from_the_book(self, request, queryset):
        """What the settle task does on its own schedule, now: an operator who has looked at the broker's
        book (or changed it) need not wait for the next look. Nothing is sent; only the book is read."""
        unsettled = queryset.filter(status__in=(Order.Status.UNKNOWN, Order.Status.NEEDS_REVIEW))
        outcomes: dict[str, int] = {}
        for order in unsettled.select_related("account__connection__app"):
            status = live_order_settle(order=order).status
            outcomes[status] = outcomes.get(status, 0) + 1
        if not outcomes:
            self.message_user(request, "None of the selected orders is UNKNOWN or NEEDS_REVIEW.", messages.WARNING)
            return
        summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items()))
        self.message_user(request, f"Read the book for {sum(outcomes.values())} orders: now {summary}.")


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The audit trail: read-only, never deleted here (`manage.py verify_audit` checks its hash chain)."""

    list_display = ["id", "created_at", "account", "order", "kind", "actor", "request_id", "chain_index"]
    list_filter = ["kind"]
    search_fields = ["request_id", "order__client_order_id", "account__user__email"]
    raw_id_fields = ["account", "order", "actor"]
    actions = None


@admin.register(AuditChainHead)
class AuditChainHeadAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["account", "length", "last_hash", "sealed_at", "purged_count", "purged_at"]
    raw_id_fields = ["account"]
    actions = None


class TradingAccountInline(admin.TabularInline):
    model = TradingAccount
    fields = ["mode", "display_name", "currency", "cash", "is_primary", "connection"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


# The user admin is identity's; the accounts it lists inline are this app's to add.
admin.site.unregister(User)


@admin.register(User)
class UserWithAccountsAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, TradingAccountInline]
