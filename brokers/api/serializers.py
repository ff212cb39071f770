from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from brokers import health
from brokers.services import tokens

# Kite api keys and secrets are short alphanumeric strings; the sandbox's demo key has underscores.
CREDENTIAL = r"^[A-Za-z0-9_]+$"
CREDENTIAL_MESSAGE = "Only letters, digits and underscores."


class FrontendUrlInputSerializer(serializers.Serializer):
    frontend_url = serializers.CharField(required=False, allow_blank=True, max_length=2048)


class KiteTestOAuthInputSerializer(FrontendUrlInputSerializer):
    api_key = serializers.RegexField(
        CREDENTIAL, min_length=6, max_length=64, error_messages={"invalid": CREDENTIAL_MESSAGE}
    )
    api_secret = serializers.RegexField(
        CREDENTIAL, min_length=6, max_length=128, error_messages={"invalid": CREDENTIAL_MESSAGE}
    )


class KiteTestOAuthOutputSerializer(serializers.Serializer):
    status = serializers.CharField()
    message = serializers.CharField()
    oauth_url = serializers.URLField()
    redirect_url = serializers.URLField()


class AuthorizationUrlOutputSerializer(serializers.Serializer):
    oauth_url = serializers.URLField()


class CallErrorOutputSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    code = serializers.CharField(
        help_text="token_expired | rate_limited | order_rate_limited | rejected | invalid_input | permission_denied | "
        "not_found | unavailable | egress_unreachable | timeout | unconfirmed"
    )
    message = serializers.CharField(help_text="Thor's short words for it: never the broker's text, never a token.")


class RateBudgetOutputSerializer(serializers.Serializer):
    bucket = serializers.CharField(
        help_text="Kite: quote | orders | other; Schwab: requests | orders | orders-day | token."
    )
    left = serializers.IntegerField(
        allow_null=True, help_text="Calls that can go now; null when the limits could not be read."
    )
    capacity = serializers.IntegerField(help_text="At most this many calls in any `per_seconds` seconds.")
    per_seconds = serializers.IntegerField(help_text="The window `capacity` counts over.")


class EgressHealthOutputSerializer(serializers.Serializer):
    required_by_tenant = serializers.BooleanField(
        source="required",
        help_text="The tenant requires an order egress for this connection's live orders (Kite static-IP rule).",
    )
    set_on = serializers.ChoiceField(
        source="source",
        choices=["connection", "app", "tenant"],
        allow_null=True,
        help_text="Whose egress the orders leave through: the connection's, the user's own app's or the tenant's; "
        "null: none, orders go direct (refused with 403 static_ip_required when required).",
    )
    ok = serializers.BooleanField(
        allow_null=True, help_text="The last probe (a tunnel to the broker through the proxy); null: never probed."
    )
    checked_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(help_text="Why the last probe failed, in Thor's words; never the URL.")


class ConnectionHealthOutputSerializer(serializers.Serializer):
    calls = serializers.ChoiceField(
        choices=["ok", "failing", "unknown"],
        help_text="failing: the last call recorded failed; unknown: none recorded (or the cache is down).",
    )
    last_success_at = serializers.DateTimeField(
        allow_null=True, help_text="The last successful broker call (to within a few seconds)."
    )
    last_error = CallErrorOutputSerializer(allow_null=True, help_text="The last failed broker call.")
    token_expires_at = serializers.DateTimeField(allow_null=True, help_text="When the access token ends.")
    rate_budget = RateBudgetOutputSerializer(
        many=True,
        help_text="What is left of the broker's rate limits, per bucket of the app (its connections share it).",
    )
    orders_unknown = serializers.IntegerField(
        source="orders.unknown", allow_null=True, help_text="Live orders whose placement the broker has not confirmed."
    )
    orders_needs_review = serializers.IntegerField(
        source="orders.needs_review",
        allow_null=True,
        help_text="Live orders that matched zero or several broker orders when the settle window closed.",
    )
    egress = EgressHealthOutputSerializer(help_text="The order egress (static IP) this connection's orders use.")
    price_bands = serializers.ChoiceField(
        choices=[health.PriceBands.CHECKED, health.PriceBands.UNCHECKED_NO_MARKET_DATA],
        allow_null=True,
        help_text="Whether this connection's live LIMIT/SL orders on Indian exchanges are checked against the "
        "instrument's price band before they are sent. checked: the tenant has a Kite market-data connection to "
        "quote them; unchecked_no_market_data: it has none (no active session on a shared Kite app), so they go "
        "to the broker unchecked and only the exchange's own band stops them; null: no band applies (not Kite).",
    )


class ConnectionOutputSerializer(serializers.Serializer):
    """Pass `context={"health": brokers.health.connections_health(connections)}` for a list: one read for all."""

    id = serializers.IntegerField()
    broker = serializers.CharField(source="app.kind")
    app_id = serializers.IntegerField()
    app_name = serializers.CharField(source="app.name")
    status = serializers.SerializerMethodField(
        help_text="pending | active | expiring (the user must link again before reauth_due_at) | expired | revoked | error"
    )
    reauth_due_at = serializers.SerializerMethodField(
        allow_null=True,
        help_text="When the refresh token ends and the user must link again (brokers with refresh tokens).",
    )
    broker_user_id = serializers.CharField()
    access_expires_at = serializers.DateTimeField(allow_null=True)
    refresh_expires_at = serializers.DateTimeField(allow_null=True)
    last_sync_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    trading_enabled = serializers.BooleanField()
    order_egress = serializers.SerializerMethodField(
        help_text="set | not set: this connection's own order egress (write it with PUT .../egress; never read back)."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    health = serializers.SerializerMethodField(help_text="How the connection's broker calls are going.")

    def get_status(self, connection) -> str:
        return tokens.connection_display_status(connection)

    def get_order_egress(self, connection) -> str:
        return "set" if connection.order_egress else "not set"

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_reauth_due_at(self, connection):
        due = tokens.connection_reauth_due_at(connection)
        return serializers.DateTimeField().to_representation(due) if due else None

    @extend_schema_field(ConnectionHealthOutputSerializer)
    def get_health(self, connection):
        read = self.context.get("health") or {}
        found = read.get(connection.pk) or health.connection_health(connection)
        return ConnectionHealthOutputSerializer(found).data


class OrderEgressInputSerializer(serializers.Serializer):
    url = serializers.CharField(
        max_length=500,
        write_only=True,
        help_text="http(s)://[user:password@]host:port of an HTTP CONNECT proxy on your registered static IP.",
    )


class LinkConfirmInputSerializer(serializers.Serializer):
    code = serializers.RegexField(r"^[A-Za-z0-9_-]{16,64}$")


def _postback_number(**kwargs):
    # Bounded so a signed but absurd value is a 400, never a database overflow.
    return serializers.DecimalField(max_digits=22, decimal_places=8, min_value=0, max_value=10**12, **kwargs)


def _postback_text(max_length):
    return serializers.CharField(max_length=max_length, required=False, allow_blank=True, default="")


class KitePostbackInputSerializer(serializers.Serializer):
    """Every field Thor reads from a postback; nothing else of the body is trusted."""

    order_id = serializers.RegexField(r"^[A-Za-z0-9-]{1,64}$")
    order_timestamp = serializers.CharField(max_length=32)
    checksum = serializers.RegexField(r"^[0-9a-fA-F]{64}$")
    user_id = serializers.CharField(max_length=100)
    status = serializers.CharField(max_length=40)
    filled_quantity = _postback_number(required=False, default=Decimal("0"))
    average_price = _postback_number(required=False, allow_null=True, default=None)
    quantity = _postback_number(required=False, default=Decimal("0"))
    price = _postback_number(required=False, allow_null=True, default=None)
    trigger_price = _postback_number(required=False, allow_null=True, default=None)
    status_message = serializers.CharField(
        max_length=2000, required=False, allow_null=True, allow_blank=True, default=""
    )
    tradingsymbol = _postback_text(64)
    exchange = _postback_text(16)
    transaction_type = _postback_text(4)
    order_type = _postback_text(8)
    product = _postback_text(8)
    validity = _postback_text(8)
    tag = serializers.CharField(max_length=20, required=False, allow_blank=True, allow_null=True, default="")

    def validate_status_message(self, value):
        return value or ""

    def validate_tag(self, value):
        return value or ""


class KitePostbackOutputSerializer(serializers.Serializer):
    status = serializers.CharField()
    applied = serializers.BooleanField(help_text="False for duplicates, late updates and accounts Thor does not hold.")


class KiteLiveReadOutputSerializer(serializers.Serializer):
    """Every live read says where it came from (live | cache | stale) and how old it is."""

    # DRF's metaclass takes declared fields out of the class: this shadows no Field.source.
    source = serializers.ChoiceField(choices=["live", "cache", "stale"])  # type: ignore[assignment]
    as_of = serializers.DateTimeField()


# Seed 003's aliases answer `data` as kiteconnect returns it (Kite's own field names, nesting and
# values, timestamps as Kite writes them), so a client of the seed 003 backend reads it unchanged.
# Fields Kite may leave out (indices have no depth, older accounts no MTF) are not required.


@extend_schema_field(OpenApiTypes.NUMBER)
class KiteNumberField(serializers.Field):
    """A JSON number exactly as Kite sent it: never re-rounded, never turned into a string."""

    def to_representation(self, value):
        return value


def kite_number(**kwargs):
    return KiteNumberField(**kwargs)


def kite_optional_number():
    return KiteNumberField(required=False)


def kite_optional_text():
    return serializers.CharField(required=False, allow_null=True, allow_blank=True)


class KiteProfileSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    user_name = serializers.CharField()
    user_shortname = serializers.CharField(required=False, allow_blank=True)
    email = serializers.CharField(allow_blank=True)
    user_type = serializers.CharField(required=False, allow_blank=True)
    broker = serializers.CharField()
    exchanges = serializers.ListField(child=serializers.CharField())
    products = serializers.ListField(child=serializers.CharField())
    order_types = serializers.ListField(child=serializers.CharField())
    avatar_url = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    meta = serializers.DictField(required=False)


class KiteProfileOutputSerializer(KiteLiveReadOutputSerializer):
    # DRF's metaclass takes declared fields out of the class: this shadows no Serializer.data.
    data = KiteProfileSerializer()  # type: ignore[assignment]


class KiteOhlcSerializer(serializers.Serializer):
    open = kite_number()
    high = kite_number()
    low = kite_number()
    close = kite_number()


class KiteDepthLevelSerializer(serializers.Serializer):
    price = kite_number()
    quantity = kite_number()
    orders = kite_number()


class KiteDepthSerializer(serializers.Serializer):
    buy = KiteDepthLevelSerializer(many=True)
    sell = KiteDepthLevelSerializer(many=True)


class KiteQuoteSerializer(serializers.Serializer):
    instrument_token = serializers.IntegerField()
    timestamp = kite_optional_text()
    last_trade_time = kite_optional_text()
    last_price = kite_number()
    last_quantity = kite_optional_number()
    buy_quantity = kite_optional_number()
    sell_quantity = kite_optional_number()
    volume = kite_optional_number()
    average_price = kite_optional_number()
    oi = kite_optional_number()
    oi_day_high = kite_optional_number()
    oi_day_low = kite_optional_number()
    net_change = kite_optional_number()
    lower_circuit_limit = kite_optional_number()
    upper_circuit_limit = kite_optional_number()
    ohlc = KiteOhlcSerializer(required=False)
    depth = KiteDepthSerializer(required=False)


class KiteQuoteOutputSerializer(KiteLiveReadOutputSerializer):
    # DRF's metaclass takes declared fields out of the class: this shadows no Serializer.data.
    data = serializers.DictField(  # type: ignore[assignment]
        child=KiteQuoteSerializer(), help_text="Kite's quote keyed by the instrument token asked for, as Kite keys it."
    )


class KiteHoldingMtfSerializer(serializers.Serializer):
    quantity = kite_number()
    used_quantity = kite_number()
    average_price = kite_number()
    value = kite_number()
    initial_margin = kite_number()


class KiteHoldingSerializer(serializers.Serializer):
    tradingsymbol = serializers.CharField()
    exchange = serializers.CharField()
    instrument_token = serializers.IntegerField()
    isin = serializers.CharField(allow_blank=True)
    product = serializers.CharField()
    price = kite_optional_number()
    quantity = kite_number()
    used_quantity = kite_optional_number()
    t1_quantity = kite_number()
    realised_quantity = kite_optional_number()
    authorised_quantity = kite_optional_number()
    authorised_date = kite_optional_text()
    authorisation = serializers.DictField(required=False)
    opening_quantity = kite_optional_number()
    short_quantity = kite_optional_number()
    collateral_quantity = kite_optional_number()
    collateral_type = kite_optional_text()
    discrepancy = serializers.BooleanField(required=False)
    average_price = kite_number()
    last_price = kite_number()
    close_price = kite_optional_number()
    pnl = kite_number()
    day_change = kite_optional_number()
    day_change_percentage = kite_optional_number()
    mtf = KiteHoldingMtfSerializer(required=False)


class KiteHoldingsOutputSerializer(KiteLiveReadOutputSerializer):
    # DRF's metaclass takes declared fields out of the class: this shadows no Serializer.data.
    data = KiteHoldingSerializer(many=True)  # type: ignore[assignment]
