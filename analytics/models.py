"""Option-chain snapshots (the contracts they quote are the market app's instrument master).

Storage plan for a year of one-minute snapshots of several underlyings: `ChainQuote` has one row per
instrument per snapshot, written in bulk and never updated. Rows arrive in time order, so a BRIN index
on `taken_at` answers time-range scans and retention deletes for a few pages of index (a btree on time
would be as big as the data's hot part); the composite btree (underlying, expiry, option_type,
strike_offset, taken_at), covering the series' columns, is exactly the moneyness series' lookup, and (underlying, taken_at) finds the
latest snapshot (the BRIN index is created by migration 0002 on PostgreSQL only: SQLite has no
BRIN, and the embedded mode never holds a year). `ChainSnapshot` has one row per underlying, expiry and snapshot (the forward, ATM
strike and spot), so reading a chain's history never scans the quotes. With the defaults (4 expiries,
21 strikes a side, two underlyings) a snapshot is ~700 rows: ~260,000 a trading day, ~65 million a
year; `THOR_ANALYTICS_RETENTION_DAYS` and the daily retention task keep the table at that bound.
If it ever outgrows that, monthly range partitions on `taken_at` turn retention into dropping a
partition; the indexes above are the ones each partition would carry.
"""

from django.db import models


class ChainSnapshot(models.Model):
    """One expiry of one underlying at one snapshot: what every quote row of it shares."""

    underlying = models.CharField(max_length=32)
    expiry = models.DateField()
    taken_at = models.DateTimeField()
    spot = models.FloatField(null=True)
    forward = models.FloatField()
    atm_strike = models.FloatField(null=True)
    years_to_expiry = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["underlying", "expiry", "taken_at"], name="chain_snapshot_unique"),
        ]
        indexes = [models.Index(fields=["underlying", "taken_at"], name="chain_snapshot_latest")]

    def __str__(self) -> str:
        return f"{self.underlying} {self.expiry} at {self.taken_at:%Y-%m-%d %H:%M}"


SERIES_COLUMNS = ("strike", "last_price", "volume", "oi", "bid", "ask", "iv", "delta", "gamma", "theta", "vega", "rho")


class ChainQuote(models.Model):
    """One instrument (an option or a future) at one snapshot, with the IV and Greeks computed from it."""

    class OptionType(models.TextChoices):
        CALL = "CE"
        PUT = "PE"
        FUTURE = "FUT"

    taken_at = models.DateTimeField()
    underlying = models.CharField(max_length=32)
    expiry = models.DateField()
    option_type = models.CharField(max_length=3, choices=OptionType.choices)
    strike = models.FloatField(default=0)
    # Strikes from the ATM strike at this snapshot (0 = ATM, +1 the next strike up): moneyness at that moment.
    strike_offset = models.SmallIntegerField(default=0)
    instrument_token = models.BigIntegerField()
    tradingsymbol = models.CharField(max_length=64)
    last_price = models.FloatField()
    volume = models.BigIntegerField(default=0)
    oi = models.BigIntegerField(default=0)
    bid = models.FloatField(null=True)
    ask = models.FloatField(null=True)
    bid_quantity = models.BigIntegerField(default=0)
    ask_quantity = models.BigIntegerField(default=0)
    # The 5-level depth summarised: total resting quantity on each side.
    depth_bid_quantity = models.BigIntegerField(default=0)
    depth_ask_quantity = models.BigIntegerField(default=0)
    iv = models.FloatField(null=True)
    iv_reason = models.SmallIntegerField(default=0)
    delta = models.FloatField(null=True)
    gamma = models.FloatField(null=True)
    theta = models.FloatField(null=True)
    vega = models.FloatField(null=True)
    rho = models.FloatField(null=True)

    class Meta:
        indexes = [
            # Covering (PostgreSQL): a moneyness series is an index-only scan of contiguous leaf pages, never
            # one heap page per snapshot.
            models.Index(
                fields=["underlying", "expiry", "option_type", "strike_offset", "taken_at"],
                include=[*SERIES_COLUMNS],
                name="chain_quote_series",
            ),
            models.Index(fields=["underlying", "taken_at"], name="chain_quote_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.tradingsymbol} at {self.taken_at:%Y-%m-%d %H:%M}"
