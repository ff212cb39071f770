"""GET /api/futures/position-signals and /api/futures/rollover-metrics on the futures the sandbox served."""

import pytest

from analytics.models import ChainQuote
from analytics.tests.api.conftest import ROLLOVER, SIGNALS


def test_position_signals_classify_the_near_future(history, bob_client, settings):
    body = bob_client.get(SIGNALS, {"symbol": "NIFTY", "interval": "1m"}).json()
    assert body["thresholds"] == {
        "price_change_pct": settings.THOR_ANALYTICS_SIGNAL_PRICE_PCT,
        "oi_change_pct": settings.THOR_ANALYTICS_SIGNAL_OI_PCT,
    }
    assert body["tradingsymbol"].endswith("FUT")
    assert len(body["points"]) == len(history) - 1
    assert body["signal"] == body["points"][-1]["signal"]
    futures = list(
        ChainQuote.objects.filter(option_type="FUT", tradingsymbol=body["tradingsymbol"]).order_by("taken_at")
    )
    for point, before, after in zip(body["points"], futures, futures[1:], strict=False):
        assert point["oi"] == after.oi
        assert point["oi_change_pct"] == pytest.approx((after.oi - before.oi) / before.oi * 100)


def test_rollover_metrics_sum_up_the_futures(history, bob_client):
    body = bob_client.get(f"{ROLLOVER}/", {"symbol": "NIFTY"}).json()
    contracts = body["contracts"]
    assert len(contracts) == 3 and [c["expiry"] for c in contracts] == sorted(c["expiry"] for c in contracts)
    total = sum(c["oi"] for c in contracts)
    assert body["rollover_pct"] == pytest.approx((total - contracts[0]["oi"]) / total * 100)
    near, following = float(contracts[0]["last_price"]), float(contracts[1]["last_price"])
    assert body["rollover_cost_pct"] == pytest.approx((following - near) / near * 100, rel=1e-3)
    assert body["rollover_cost_annualised_pct"] > body["rollover_cost_pct"] > 0
    assert body["days_to_expiry"] == contracts[0]["days_to_expiry"] > 0
    assert body["rollover_pressure_label"] in {"high", "moderate", "low"}
    assert body["rollover_pct_change"] is not None
    assert all(c["annualised_basis_pct"] > 0 for c in contracts)  # futures above spot: a cost of carry
