"""GET /api/fo/moneyness-series on the chain the sandbox served, and its two builders (PostgreSQL, Python)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import moneyness_series
from analytics.models import ChainQuote, ChainSnapshot
from analytics.tests.api.conftest import SERIES


def test_the_moneyness_series_follows_the_money_across_snapshots(history, charlie_client):
    start = (history[0].taken_at - timedelta(seconds=1)).isoformat()
    body = charlie_client.get(
        SERIES, {"underlying": "NIFTY", "moneyness": "OTM2", "metric": "iv", "from": start}
    ).json()
    assert body["count"] == len(history) == len(body["points"])
    for point, summary in zip(body["points"], history, strict=True):
        snapshot = ChainSnapshot.objects.filter(taken_at=summary.taken_at).order_by("expiry").first()
        # An OTM2 call is two strikes above that snapshot's ATM strike.
        assert float(point["strike"]) == snapshot.atm_strike + 100
        stored = ChainQuote.objects.get(
            taken_at=summary.taken_at, expiry=snapshot.expiry, option_type="CE", strike=float(point["strike"])
        )
        assert point["value"] == pytest.approx(stored.iv)
    itm_put = charlie_client.get(
        SERIES,
        {"underlying": "NIFTY", "moneyness": "ITM2", "option_side": "put", "metric": "premium", "from": start},
    ).json()
    assert [float(p["strike"]) for p in itm_put["points"]] == [float(p["strike"]) for p in body["points"]]
    five_minutes = charlie_client.get(
        SERIES, {"underlying": "NIFTY", "metric": "oi", "interval": "5m", "from": start}
    ).json()
    assert 1 <= five_minutes["count"] <= 2
    assert five_minutes["points"][-1]["t"] == body["points"][-1]["t"]


def test_the_envelope_is_the_serializers_with_the_points_last(history, bob_client):
    response = bob_client.get(SERIES, {"underlying": "NIFTY"})
    assert response["Content-Type"] == "application/json"
    assert list(response.json()) == [
        "underlying",
        "expiry",
        "moneyness",
        "option_side",
        "metric",
        "interval",
        "from",
        "to",
        "as_of",
        "source",
        "count",
        "points",
    ]


def test_an_empty_window_is_an_empty_series(history, bob_client):
    long_ago = timezone.now() - timedelta(days=300)
    response = bob_client.get(
        SERIES, {"underlying": "NIFTY", "from": long_ago.isoformat(), "to": (long_ago + timedelta(days=1)).isoformat()}
    )
    assert response.status_code == 200
    assert (response.json()["count"], response.json()["points"]) == (0, [])


@pytest.mark.parametrize("interval", ["1m", "5m", "1h", "1d"])
def test_the_series_postgresql_builds_is_the_one_python_builds(history, interval):
    snapshot = ChainSnapshot.objects.order_by("expiry").first()
    series = {
        "underlying": "NIFTY",
        "expiry": snapshot.expiry,
        "option_type": "PE",
        "strike_offset": -1,
        "start": history[0].taken_at - timedelta(days=1),
        "end": history[-1].taken_at + timedelta(seconds=1),
    }
    seconds = moneyness_series.INTERVAL_SECONDS[interval]
    in_python = moneyness_series.series_points(series, "iv", seconds)
    text, count = moneyness_series.series_json(series, "iv", seconds)
    assert json.loads(text) == in_python and count == len(in_python) > 0


def test_a_column_outside_the_metrics_never_reaches_the_sql(db):
    with pytest.raises(ValueError, match="not a series column"):
        moneyness_series.series_json({}, "iv; DROP TABLE analytics_chainquote", 60)
