from decimal import Decimal

from rest_framework import serializers

from accounts.market_data import ORDER_TYPES, VALIDITIES
from accounts.models import Order
from identity.api.serializers import UserOutputSerializer
from identity.models import ALGO_ID_PATTERN, ALGO_ID_RULE
from thor.fields import MoneyField, PriceField, QuantityField

PRICE = {"max_digits": 14, "decimal_places": 4, "min_value": Decimal("0.0001")}


class AccountOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    mode = serializers.CharField()
    broker = serializers.CharField()
    status = serializers.CharField()
    currency = serializers.CharField()
    display_name = serializers.CharField()
    primary = serializers.BooleanField(source="is_primary")
    broker_account_id = serializers.CharField()
    account_number = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_account_number(self, account) -> str:
        number = account.account_number
        return f"****{number[-4:]}" if number else ""


class PrimaryAccountOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    mode = serializers.CharField()
    broker = serializers.CharField()
    currency = serializers.CharField()
    cash = MoneyField()


class MeOutputSerializer(UserOutputSerializer):
    """The signed-in user with their primary account: identity's user, as the accounts app sees it."""

    primary_account = PrimaryAccountOutputSerializer(allow_null=True)

    class Meta(UserOutputSerializer.Meta):
        fields = [*UserOutputSerializer.Meta.fields, "primary_account"]


class PaperAccountCreateInputSerializer(serializers.Serializer):
    currency = serializers.RegexField(r"^[A-Z]{3}$", help_text="An ISO 4217 code the tenant offers, e.g. INR.")


class AccountUpdateInputSerializer(serializers.Serializer):
    primary = serializers.BooleanField()

    def validate_primary(self, value):
        if not value:
            raise serializers.ValidationError("Make another account primary instead.")
        return value


class OrderInputSerializer(serializers.Serializer):
    tradingsymbol = serializers.CharField(max_length=64)
    exchange = serializers.CharField(max_length=16)
    transaction_type = serializers.ChoiceField(choices=Order.Side.values)
    quantity = serializers.IntegerField(min_value=1, max_value=10**9)
    order_type = serializers.ChoiceField(choices=ORDER_TYPES)
    product = serializers.ChoiceField(choices=("CNC", "MIS", "NRML"))
    price = serializers.DecimalField(**PRICE, required=False, allow_null=True)
    trigger_price = serializers.DecimalField(**PRICE, required=False, allow_null=True)
    validity = serializers.ChoiceField(choices=VALIDITIES, default="DAY")
    tag = serializers.CharField(max_length=20, required=False, allow_blank=True, default="")
    algo_id = serializers.RegexField(
        ALGO_ID_PATTERN,
        required=False,
        help_text=(
            "One of the tenant's exchange-registered algo ids (sent as Kite's `algo_id`); "
            "without it, the tenant's first."
        ),
        trim_whitespace=False,  # an id with a stray space or newline is not the id: refused, not trimmed
        error_messages={
            "invalid": f"Must be {ALGO_ID_RULE}.",
            "blank": f"Must be {ALGO_ID_RULE}; leave it out for the tenant's own.",
        },
    )


class OrderModifyInputSerializer(serializers.Serializer):
    quantity = serializers.IntegerField(min_value=1, max_value=10**9, required=False)
    order_type = serializers.ChoiceField(choices=ORDER_TYPES, required=False)
    price = serializers.DecimalField(**PRICE, required=False, allow_null=True)
    trigger_price = serializers.DecimalField(**PRICE, required=False, allow_null=True)
    validity = serializers.ChoiceField(choices=VALIDITIES, required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                "Send at least one of quantity, order_type, price, trigger_price, validity."
            )
        return attrs


class BatchInputSerializer(serializers.Serializer):
    orders = serializers.ListField(child=OrderInputSerializer(), min_length=1, max_length=20)


class OrderListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Order.Status.values, required=False)
    symbol = serializers.CharField(max_length=64, required=False)
    side = serializers.ChoiceField(choices=Order.Side.values, required=False)
    created_from = serializers.DateTimeField(required=False)
    created_to = serializers.DateTimeField(required=False)

    def to_internal_value(self, data):
        # `from` and `to` are Python keywords: renamed on the way in.
        renamed = {"from": "created_from", "to": "created_to"}
        data = {renamed.get(key, key): data.get(key) for key in data if data.get(key) not in (None, "")}
        return super().to_internal_value(data)


# The Output serializers of orders, batches, positions, holdings and funds are their OpenAPI schema only:
# every answer and socket message that shows one is built by accounts.presenters, and
# accounts/tests/test_presenters.py holds each presenter to its serializer.
class OrderChildOutputSerializer(serializers.Serializer):
    """One slice of an order placed above the exchange's freeze quantity."""

    id = serializers.IntegerField()
    broker_order_id = serializers.CharField(help_text="The slice's own order at the broker (live).")
    quantity = QuantityField()
    status = serializers.CharField()
    status_message = serializers.CharField(help_text="Why a slice was not placed or did not fill: the broker's words.")
    filled_quantity = QuantityField()
    average_price = PriceField(allow_null=True)


class OrderOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    client_order_id = serializers.CharField()
    broker_order_id = serializers.CharField()
    tradingsymbol = serializers.CharField(source="symbol")
    exchange = serializers.CharField()
    transaction_type = serializers.CharField(source="side")
    quantity = QuantityField()
    order_type = serializers.CharField()
    product = serializers.CharField()
    price = PriceField(allow_null=True)
    trigger_price = PriceField(allow_null=True)
    validity = serializers.CharField()
    tag = serializers.CharField()
    algo_id = serializers.CharField(help_text="The exchange algo id the order carries; empty: none.")
    status = serializers.CharField()
    status_message = serializers.CharField()
    filled_quantity = QuantityField()
    average_price = PriceField(allow_null=True)
    charges = MoneyField(
        allow_null=True,
        help_text="Paper orders: what the fill cost beyond its price (brokerage, taxes and fees of the tenant's "
        "schedule), debited from cash; a sliced order shows its slices' sum. Null when nothing was charged.",
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    children = OrderChildOutputSerializer(
        many=True,
        source="child_orders",
        default=list,
        help_text="The slices of an order above the exchange's freeze quantity (each at most that quantity, "
        "at most 10); empty for any other order.",
    )


class OrderPageOutputSerializer(serializers.Serializer):
    """One page of the cursor-paginated order list: `next` and `previous` are links, null at either end."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = OrderOutputSerializer(many=True)


class BatchLegOutputSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    outcome = serializers.ChoiceField(choices=("placed", "rejected", "cancelled"))
    message = serializers.CharField()
    order = OrderOutputSerializer()


class BatchOutputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=("placed", "failed", "partial"))
    legs = BatchLegOutputSerializer(many=True)


class PositionOutputSerializer(serializers.Serializer):
    tradingsymbol = serializers.CharField(source="symbol")
    exchange = serializers.CharField()
    product = serializers.CharField()
    quantity = QuantityField()
    average_price = PriceField(allow_null=True)  # null when the broker does not say (Schwab may not)
    last_price = PriceField()
    realised_pnl = MoneyField()
    unrealised_pnl = MoneyField()
    day_pnl = MoneyField()
    value = MoneyField()


class HoldingOutputSerializer(serializers.Serializer):
    tradingsymbol = serializers.CharField(source="symbol")
    exchange = serializers.CharField()
    quantity = QuantityField()
    average_price = PriceField(allow_null=True)  # null when the broker does not say (Schwab may not)
    last_price = PriceField()
    pnl = MoneyField()
    day_change = MoneyField()
    value = MoneyField()
    isin = serializers.CharField()


class FundsOutputSerializer(serializers.Serializer):
    currency = serializers.CharField()
    cash = MoneyField()
    available = MoneyField()
    utilised = MoneyField()
    buying_power = MoneyField()
    net_liquidation = MoneyField()
    charges_today = MoneyField(
        allow_null=True,
        help_text="Paper accounts: the charges of today's fills (the account's exchange day), already taken from "
        "cash. Null on live accounts (the broker's own figures).",
    )


def envelope_serializer(name: str, data_field: serializers.Field) -> type[serializers.Serializer]:
    """`{account_id, source, as_of, data}`: where the numbers came from and how old they are."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "account_id": serializers.IntegerField(),
            "source": serializers.ChoiceField(choices=("live", "cache", "stale")),
            "as_of": serializers.DateTimeField(),
            "data": data_field,
        },
    )


PositionsOutputSerializer = envelope_serializer("PositionsOutputSerializer", PositionOutputSerializer(many=True))
HoldingsOutputSerializer = envelope_serializer("HoldingsOutputSerializer", HoldingOutputSerializer(many=True))
FundsEnvelopeOutputSerializer = envelope_serializer("FundsEnvelopeOutputSerializer", FundsOutputSerializer())


class SyncOutputSerializer(serializers.Serializer):
    account_id = serializers.IntegerField()
    changed = serializers.DictField(child=serializers.IntegerField())
    as_of = serializers.DateTimeField()
