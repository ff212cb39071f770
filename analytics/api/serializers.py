from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics import market_metrics
from analytics.moneyness_series import INTERVAL_SECONDS, MAX_SERIES_POINTS, SERIES_METRICS
from thor.fields import PriceField, QuantityField

MONEYNESS_CHOICES = ["ATM", *(f"ITM{step}" for step in range(1, 11)), *(f"OTM{step}" for step in range(1, 11))]
SOURCES = ["live", "cache", "stale"]
MAX_WINDOW_DAYS = 366
DEFAULT_WINDOW = timedelta(days=1)


class UnderlyingField(serializers.RegexField):
    """An underlying's Kite name (NIFTY, BANKNIFTY, M&M): letters, digits, & and -, upper-cased."""

    def __init__(self, **kwargs):
        super().__init__(r"^[A-Za-z0-9&-]{1,32}$", max_length=32, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data).upper()


# --- inputs -------------------------------------------------------------------------------------


class StrikeDistributionInputSerializer(serializers.Serializer):
    underlying = UnderlyingField()
    expiry = serializers.DateField(required=False, help_text="Default: the nearest expiry.")
    option_side = serializers.ChoiceField(choices=["call", "put", "both"], default="both")
    strikes_around_atm = serializers.IntegerField(min_value=0, max_value=50, default=10)


class MoneynessSeriesInputSerializer(serializers.Serializer):
    underlying = UnderlyingField()
    expiry = serializers.DateField(required=False, help_text="Default: the nearest expiry.")
    moneyness = serializers.ChoiceField(choices=MONEYNESS_CHOICES, default="ATM")
    option_side = serializers.ChoiceField(choices=["call", "put"], default="call")
    metric = serializers.ChoiceField(choices=list(SERIES_METRICS), default="iv")
    vars()["from"] = serializers.DateTimeField(required=False, help_text="Default: a day before `to`.")
    to = serializers.DateTimeField(required=False, help_text="Default: now.")
    interval = serializers.ChoiceField(choices=list(INTERVAL_SECONDS), default="1m")

    def validate(self, attrs):
        end = attrs.get("to") or timezone.now()
        start = attrs.get("from") or end - DEFAULT_WINDOW
        if start >= end:
            raise serializers.ValidationError({"from": ["Must be before `to`."]})
        if end - start > timedelta(days=MAX_WINDOW_DAYS):
            raise serializers.ValidationError({"from": [f"The window may span at most {MAX_WINDOW_DAYS} days."]})
        points = (end - start).total_seconds() / INTERVAL_SECONDS[attrs["interval"]]
        if points > MAX_SERIES_POINTS:
            raise serializers.ValidationError(
                {
                    "interval": [
                        f"At most {MAX_SERIES_POINTS} points a call: choose a longer interval or a shorter window."
                    ]
                }
            )
        return {**attrs, "start": start, "end": end}


class FuturesSymbolInputSerializer(serializers.Serializer):
    symbol = UnderlyingField(help_text="The underlying of the futures, e.g. NIFTY.")


class PositionSignalsInputSerializer(FuturesSymbolInputSerializer):
    interval = serializers.ChoiceField(choices=list(INTERVAL_SECONDS), default="5m")


# --- outputs ------------------------------------------------------------------------------------


class DepthOutputSerializer(serializers.Serializer):
    spread = PriceField(allow_null=True, help_text="ask - bid.")
    spread_bps = serializers.FloatField(allow_null=True, help_text="spread / mid x 10,000.")
    microprice = PriceField(allow_null=True, help_text="(bid x ask_qty + ask x bid_qty) / (bid_qty + ask_qty).")
    bid_quantity_5 = QuantityField(help_text="Quantity resting on the 5 best bid levels.")
    ask_quantity_5 = QuantityField(help_text="Quantity resting on the 5 best ask levels.")
    liquidity_score = serializers.FloatField(
        help_text=(
            "0-100: half from the spread (100 bps or wider scores 0, no spread 50), half from the thinner side's "
            "5-level quantity on a log scale (1 unit 0, 100,000 or more 50). No two-sided market: 0."
        )
    )


class OptionSideOutputSerializer(serializers.Serializer):
    tradingsymbol = serializers.CharField()
    instrument_token = serializers.IntegerField()
    last_price = PriceField()
    bid = PriceField(allow_null=True)
    ask = PriceField(allow_null=True)
    bid_quantity = QuantityField()
    ask_quantity = QuantityField()
    depth_bid_quantity = QuantityField()
    depth_ask_quantity = QuantityField()
    volume = QuantityField()
    oi = QuantityField()
    oi_change = serializers.IntegerField(help_text="OI now minus OI at the day's first snapshot (India's day).")
    iv = serializers.FloatField(allow_null=True, help_text="Black-76 implied volatility (0.15 = 15%); null when none.")
    delta = serializers.FloatField(allow_null=True)
    gamma = serializers.FloatField(allow_null=True)
    theta = serializers.FloatField(allow_null=True, help_text="Per calendar day.")
    vega = serializers.FloatField(allow_null=True, help_text="Per 1 vol point.")
    rho = serializers.FloatField(allow_null=True)
    model_price = PriceField(allow_null=True, help_text="Black-76 at the expiry's ATM IV.")
    premium = PriceField(allow_null=True, help_text="last_price - model_price (negative: a discount).")
    premium_pct = serializers.FloatField(allow_null=True)
    depth = DepthOutputSerializer()


class StrikeRowOutputSerializer(serializers.Serializer):
    strike = PriceField()
    strike_offset = serializers.IntegerField(help_text="Strikes from the ATM strike (0 = ATM).")
    gamma_exposure = serializers.FloatField(
        help_text="(call gamma x call OI - put gamma x put OI) x forward^2 x 1%: dealers' delta change for a 1% move."
    )
    call = OptionSideOutputSerializer(allow_null=True)
    put = OptionSideOutputSerializer(allow_null=True)


class ChainMetricsOutputSerializer(serializers.Serializer):
    atm_strike = PriceField(allow_null=True)
    forward = PriceField()
    spot = PriceField(allow_null=True, help_text="The forward discounted to today.")
    days_to_expiry = serializers.FloatField()
    pcr_oi = serializers.FloatField(allow_null=True, help_text="Put OI / call OI over the snapshot's strikes.")
    pcr_volume = serializers.FloatField(allow_null=True)
    max_pain_strike = PriceField(allow_null=True, help_text="The strike at which option holders are paid least.")
    atm_iv = serializers.FloatField(allow_null=True)
    skew_25_delta = serializers.FloatField(allow_null=True, help_text="25-delta put IV - 25-delta call IV, vol points.")
    net_gamma_exposure = serializers.FloatField()
    call_oi = QuantityField()
    put_oi = QuantityField()


class StrikeDistributionOutputSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    expiry = serializers.DateField()
    as_of = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=SOURCES)
    option_side = serializers.CharField()
    strikes_around_atm = serializers.IntegerField()
    chain = ChainMetricsOutputSerializer()
    strikes = StrikeRowOutputSerializer(many=True)


class SeriesPointOutputSerializer(serializers.Serializer):
    t = serializers.DateTimeField()
    strike = PriceField(help_text="The strike at this moneyness at that snapshot.")
    value = serializers.FloatField(allow_null=True)


@extend_schema_field(SeriesPointOutputSerializer(many=True))
class SeriesPointsField(serializers.ListField):
    """The points as the selector built them, JSON-ready: a series is too long to serialize field by field."""

    def to_representation(self, data):
        return data


class MoneynessSeriesOutputSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    expiry = serializers.DateField()
    moneyness = serializers.CharField()
    option_side = serializers.CharField()
    metric = serializers.CharField()
    interval = serializers.CharField()
    vars()["from"] = serializers.DateTimeField()
    to = serializers.DateTimeField()
    as_of = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=SOURCES)
    count = serializers.IntegerField()
    points = SeriesPointsField()


class ThresholdsOutputSerializer(serializers.Serializer):
    price_change_pct = serializers.FloatField()
    oi_change_pct = serializers.FloatField()


class SignalPointOutputSerializer(serializers.Serializer):
    t = serializers.DateTimeField()
    price = PriceField()
    oi = QuantityField()
    price_change_pct = serializers.FloatField(allow_null=True)
    oi_change_pct = serializers.FloatField(allow_null=True)
    signal = serializers.ChoiceField(choices=market_metrics.SIGNALS)


class PositionSignalsOutputSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    expiry = serializers.DateField(allow_null=True)
    tradingsymbol = serializers.CharField(allow_null=True)
    interval = serializers.CharField()
    as_of = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=SOURCES)
    thresholds = ThresholdsOutputSerializer()
    signal = serializers.ChoiceField(choices=market_metrics.SIGNALS, help_text="The latest interval's signal.")
    points = SignalPointOutputSerializer(many=True)


class FuturesContractOutputSerializer(serializers.Serializer):
    expiry = serializers.DateField()
    tradingsymbol = serializers.CharField()
    last_price = PriceField()
    oi = QuantityField()
    oi_share_pct = serializers.FloatField(allow_null=True)
    days_to_expiry = serializers.FloatField()
    basis = PriceField(allow_null=True, help_text="last_price - spot.")
    annualised_basis_pct = serializers.FloatField(allow_null=True)


class RolloverMetricsOutputSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    as_of = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=SOURCES)
    spot = PriceField(allow_null=True)
    contracts = FuturesContractOutputSerializer(many=True)
    rollover_pct = serializers.FloatField(allow_null=True, help_text="OI beyond the near month / all futures OI.")
    rollover_pct_change = serializers.FloatField(allow_null=True, help_text="Since the day's first snapshot.")
    rollover_cost_pct = serializers.FloatField(allow_null=True, help_text="(next - near) / near.")
    rollover_cost_annualised_pct = serializers.FloatField(allow_null=True)
    days_to_expiry = serializers.FloatField(help_text="Of the near month.")
    rollover_pressure = serializers.FloatField(
        allow_null=True, help_text="(100 - rollover_pct) / days to the near expiry (at least 1): percent a day."
    )
    rollover_pressure_label = serializers.ChoiceField(
        choices=["high", "moderate", "low", "unknown"], help_text="high >= 20 %/day, moderate >= 8, else low."
    )
