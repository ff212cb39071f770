"""DRF fields that render amounts, prices and quantities by the one money policy (thor.money)."""

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
