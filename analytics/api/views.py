"""The F&O and futures endpoints: market data from the stored snapshots, for any signed-in user."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import selectors
from analytics.api import serializers
from analytics.api.renderers import EmbeddingJSONRenderer, PreRenderedJSON
from analytics.chain_snapshots import chain_first_snapshot_take
from analytics.errors import ChainNotSnapshotted
from thor.errors import error_responses

READ_ERRORS = error_responses(400, 401, 404, 503)
STALE_NOTE = (
    " Every answer carries `as_of` and `source`: `live` (a recent snapshot), `cache` (the same answer within one"
    " snapshot period) or `stale` (no snapshot for two snapshot periods: the last one). An unknown underlying or"
    " expiry is a 404 whose `errors` list the valid choices; a chain never snapshotted, whose first snapshot"
    " cannot be taken, a 503."
)


def _query(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _read(select, **query) -> dict:
    """select(**query); when no snapshot of the chain is stored yet (a new installation, before the beat's
    first), the first one is taken for this reader (503 when it cannot be), then read."""
    try:
        return select(**query)
    except ChainNotSnapshotted as missing:
        chain_first_snapshot_take(underlying=missing.underlying)
        return select(**query)


@extend_schema(
    summary="Option chain by strike: quotes, IV, Greeks, depth and chain metrics",
    description="Per strike and side: last price, bid/ask and quantities, volume, OI and its change today, IV,"
    " Greeks, the Black-76 model price at the ATM IV and the premium against it, and depth metrics; per chain:"
    " ATM strike, forward, days to expiry, PCR by OI and volume, max pain, ATM IV, 25-delta skew, gamma"
    " exposure." + STALE_NOTE,
    parameters=[serializers.StrikeDistributionInputSerializer],
    responses={200: serializers.StrikeDistributionOutputSerializer, **READ_ERRORS},
    tags=["fo"],
)
class StrikeDistributionView(APIView):
    def get(self, request):
        query = _query(serializers.StrikeDistributionInputSerializer, request)
        body = _read(
            selectors.strike_distribution_get,
            underlying=query["underlying"],
            expiry=query.get("expiry"),
            option_side=query["option_side"],
            strikes_around_atm=query["strikes_around_atm"],
        )
        return Response(serializers.StrikeDistributionOutputSerializer(body).data)


@extend_schema(
    summary="A metric over time at a fixed moneyness (re-evaluated at each snapshot)",
    description="The last value in each interval of the stored one-minute snapshots. ITM calls sit below the ATM"
    " strike, ITM puts above. An empty window is a 200 with no points; `from` after `to`, a window over 366 days or"
    " more than 50,000 points are 400s." + STALE_NOTE,
    parameters=[serializers.MoneynessSeriesInputSerializer],
    responses={200: serializers.MoneynessSeriesOutputSerializer, **READ_ERRORS},
    tags=["fo"],
)
class MoneynessSeriesView(APIView):
    renderer_classes = [EmbeddingJSONRenderer]

    def get(self, request):
        query = _query(serializers.MoneynessSeriesInputSerializer, request)
        body = _read(
            selectors.moneyness_series_get,
            underlying=query["underlying"],
            expiry=query.get("expiry"),
            moneyness=query["moneyness"],
            option_side=query["option_side"],
            metric=query["metric"],
            start=query["start"],
            end=query["end"],
            interval=query["interval"],
        )
        points_json = body.pop("points_json", None)
        if points_json is not None:
            # PostgreSQL built the points' JSON (up to a month of minutes): embedded as it is, never re-encoded.
            body["points"] = PreRenderedJSON(points_json)
        return Response(serializers.MoneynessSeriesOutputSerializer(body).data)


@extend_schema(
    summary="Futures position signals from price and OI change",
    description="For the near-month future, each of the last 60 intervals: price up + OI up = long_buildup, price"
    " down + OI up = short_buildup, price up + OI down = short_covering, price down + OI down = long_unwinding; a"
    " change below either threshold (returned in `thresholds`, set by THOR_ANALYTICS_SIGNAL_PRICE_PCT and"
    " THOR_ANALYTICS_SIGNAL_OI_PCT) is neutral." + STALE_NOTE,
    parameters=[serializers.PositionSignalsInputSerializer],
    responses={200: serializers.PositionSignalsOutputSerializer, **READ_ERRORS},
    tags=["futures"],
)
class PositionSignalsView(APIView):
    def get(self, request):
        query = _query(serializers.PositionSignalsInputSerializer, request)
        body = _read(selectors.position_signals_get, symbol=query["symbol"], interval=query["interval"])
        return Response(serializers.PositionSignalsOutputSerializer(body).data)


@extend_schema(
    summary="Futures rollover: OI per expiry, rollover %, cost and pressure",
    description="rollover_pct is the OI beyond the near month over all futures OI; the cost is the next month's"
    " premium over the near month's, also annualised over the days between their expiries; the pressure is the"
    " share still to roll per day left to the near expiry." + STALE_NOTE,
    parameters=[serializers.FuturesSymbolInputSerializer],
    responses={200: serializers.RolloverMetricsOutputSerializer, **READ_ERRORS},
    tags=["futures"],
)
class RolloverMetricsView(APIView):
    def get(self, request):
        query = _query(serializers.FuturesSymbolInputSerializer, request)
        body = _read(selectors.rollover_metrics_get, symbol=query["symbol"])
        return Response(serializers.RolloverMetricsOutputSerializer(body).data)
