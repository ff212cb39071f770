from decimal import Decimal

from rest_framework import serializers

# Kite api keys and secrets are short alphanumeric strings; the sandbox's demo key has underscores.
CREDENTIAL = r"^[A-Za-z0-9_]+$"
CREDENTIAL_MESSAGE = "Only letters, digits and underscores."


def money():
    """A Decimal rendered as a string, exactly as the broker gave it."""
    return serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True)


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


class ConnectionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    broker = serializers.CharField(source="app.kind")
    app_id = serializers.IntegerField()
    app_name = serializers.CharField(source="app.name")
    status = serializers.CharField()
    broker_user_id = serializers.CharField()
    access_expires_at = serializers.DateTimeField(allow_null=True)
    refresh_expires_at = serializers.DateTimeField(allow_null=True)
    last_sync_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    trading_enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


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

    source = serializers.CharField()
    as_of = serializers.DateTimeField()


class KiteProfileSerializer(serializers.Serializer):
    broker_user_id = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField()
    broker = serializers.CharField()
    exchanges = serializers.ListField(child=serializers.CharField())
    products = serializers.ListField(child=serializers.CharField())
    order_types = serializers.ListField(child=serializers.CharField())


class KiteProfileOutputSerializer(KiteLiveReadOutputSerializer):
    data = KiteProfileSerializer()


class KiteQuoteSerializer(serializers.Serializer):
    instrument_token = serializers.IntegerField(allow_null=True)
    symbol = serializers.CharField()
    exchange = serializers.CharField()
    last_price = money()
    open = money()
    high = money()
    low = money()
    close = money()
    volume = serializers.IntegerField(allow_null=True)
    timestamp = serializers.DateTimeField(allow_null=True)


class KiteQuoteOutputSerializer(KiteLiveReadOutputSerializer):
    data = KiteQuoteSerializer()


class KiteHoldingSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    exchange = serializers.CharField()
    isin = serializers.CharField()
    instrument_token = serializers.IntegerField(allow_null=True)
    quantity = money()
    average_price = money()
    last_price = money()
    pnl = money()
    day_change = money()
    value = money()


class KiteHoldingsOutputSerializer(KiteLiveReadOutputSerializer):
    data = KiteHoldingSerializer(many=True)
