"""DRF fields that render amounts, prices and quantities by the one money policy (thor.money), and the
text DRF's DateTimeField renders, for answers built without a serializer."""

from django.utils import timezone
from rest_framework import serializers

from thor import money


class MoneyField(serializers.DecimalField):
    def __init__(self, **kwargs):
        super().__init__(max_digits=20, decimal_places=money.MONEY_PLACES, rounding=money.ROUNDING, **kwargs)


class PriceField(serializers.DecimalField):
    def __init__(self, **kwargs):
        super().__init__(max_digits=20, decimal_places=money.PRICE_PLACES, rounding=money.ROUNDING, **kwargs)


class QuantityField(serializers.IntegerField):
    def to_representation(self, value):
        return money.quantity(value)


def timestamp_text(value) -> str:
    """What DRF's DateTimeField renders (ISO 8601 in the current time zone, "Z" for UTC)."""
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
