"""The instrument master: every contract Thor knows, from each broker's source, expired ones kept."""

from django.db import models


class Instrument(models.Model):
    """One listed contract, upserted by (exchange, tradingsymbol) from its source's dump or search.

    A contract past its expiry, or gone from its source's dump, is kept (orders and snapshots still name
    it) but marked expired and not tradable; an index is listed (it has a price) but never tradable.
    """

    class Source(models.TextChoices):
        KITE = "kite"
        SCHWAB = "schwab"

    source = models.CharField(max_length=16, choices=Source.choices)
    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    instrument_token = models.BigIntegerField(null=True, blank=True, db_index=True)
    exchange_token = models.BigIntegerField(null=True, blank=True)
    name = models.CharField(max_length=128, blank=True)
    segment = models.CharField(max_length=16, blank=True)
    instrument_type = models.CharField(max_length=8, blank=True)
    expiry = models.DateField(null=True, blank=True)
    strike = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    lot_size = models.PositiveIntegerField(default=1)
    tick_size = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    # The exchange's largest quantity in one order (index derivatives); None where there is none.
    freeze_quantity = models.PositiveIntegerField(null=True, blank=True)
    # Price units one unit of quantity is worth (value = quantity x price x multiplier): 1 but on MCX and the
    # currency segments, where a quantity is lots (brokers.contract_multipliers); None where Thor does not know it.
    multiplier = models.PositiveIntegerField(null=True, blank=True, default=1)
    currency = models.CharField(max_length=3)
    tradable = models.BooleanField(default=True)
    expired = models.BooleanField(default=False)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "tradingsymbol"], name="market_instrument_unique_symbol"),
        ]
        indexes = [models.Index(fields=["name", "instrument_type", "expiry"], name="market_instrument_chain")]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"
