"""The metric definitions the API docs state, on hand-built numbers."""

import math

import pytest

from analytics import market_metrics as metrics

THRESHOLDS = {"price_threshold": 0.1, "oi_threshold": 1.0}


@pytest.mark.parametrize(
    ("price_change", "oi_change", "signal"),
    [
        (0.5, 2.0, metrics.LONG_BUILDUP),
        (-0.5, 2.0, metrics.SHORT_BUILDUP),
        (0.5, -2.0, metrics.SHORT_COVERING),
        (-0.5, -2.0, metrics.LONG_UNWINDING),
        (0.05, 5.0, metrics.NEUTRAL),  # price moved less than its threshold
        (2.0, 0.5, metrics.NEUTRAL),  # OI moved less than its threshold
        (0.0, 0.0, metrics.NEUTRAL),
        (None, 3.0, metrics.NEUTRAL),  # no previous price to compare with
    ],
)
def test_each_price_and_oi_move_has_its_signal(price_change, oi_change, signal):
    assert metrics.classify(price_change, oi_change, **THRESHOLDS) == signal


def test_a_hand_built_futures_series_reads_as_buildup_then_covering_then_unwinding():
    series = [
        ("09:15", 24000.0, 1_000_000),
        ("09:20", 24120.0, 1_050_000),  # +0.5% price, +5% OI: longs building
        ("09:25", 24000.0, 1_100_000),  # -0.5%, +4.8%: shorts building
        ("09:30", 24100.0, 1_050_000),  # up, OI down: shorts covering
        ("09:35", 24000.0, 1_000_000),  # down, OI down: longs unwinding
        ("09:40", 24001.0, 1_000_100),  # barely moved: neutral
    ]
    points = metrics.position_signals(series, **THRESHOLDS)
    assert [point.signal for point in points] == [
        metrics.LONG_BUILDUP,
        metrics.SHORT_BUILDUP,
        metrics.SHORT_COVERING,
        metrics.LONG_UNWINDING,
        metrics.NEUTRAL,
    ]
    assert points[0].t == "09:20"
    assert points[0].price_change_pct == pytest.approx(0.5)
    assert points[0].oi_change_pct == pytest.approx(5.0)


def test_a_series_of_one_point_has_no_signals_and_a_zero_price_is_neutral():
    assert metrics.position_signals([("t", 100.0, 10)], **THRESHOLDS) == []
    assert metrics.position_signals([("a", 0.0, 10), ("b", 100.0, 20)], **THRESHOLDS)[0].signal == metrics.NEUTRAL


def test_depth_metrics_follow_their_definitions():
    depth = metrics.depth_metrics(99.0, 101.0, 300, 100, 1_000, 2_000)
    assert depth.spread == 2.0
    assert depth.spread_bps == pytest.approx(200.0)
    # More waiting on the bid pushes the microprice towards the ask.
    assert depth.microprice == pytest.approx((99.0 * 100 + 101.0 * 300) / 400)
    # A 200 bps spread scores nothing for its spread; 1,000 units on the thinner side score 50 x log(1001)/log(100001).
    assert depth.liquidity_score == pytest.approx(50 * math.log10(1001) / math.log10(100_001), abs=0.01)


def test_a_tight_deep_book_scores_near_100_and_a_one_sided_book_scores_0():
    assert metrics.depth_metrics(100.0, 100.05, 5000, 5000, 500_000, 400_000).liquidity_score > 97
    one_sided = metrics.depth_metrics(None, 101.0, 0, 100, 0, 500)
    assert (one_sided.spread, one_sided.microprice, one_sided.liquidity_score) == (None, None, 0.0)
    crossed = metrics.depth_metrics(101.0, 100.0, 10, 10, 10, 10)
    assert crossed.liquidity_score == 0.0


def test_max_pain_is_the_strike_that_pays_option_holders_least():
    strikes = [100.0, 110.0, 120.0]
    # Heavy call OI at 100 and heavy put OI at 120 pin settlement at 110.
    assert metrics.max_pain_strike(strikes, [1000, 10, 10], [10, 10, 1000]) == 110.0
    assert metrics.max_pain_strike(strikes, [0, 0, 500], [0, 0, 0]) in strikes
    assert metrics.max_pain_strike([], [], []) is None


def test_the_25_delta_skew_interpolates_on_delta_and_needs_both_wings():
    call_deltas, call_ivs = [0.6, 0.4, 0.2], [0.14, 0.13, 0.12]
    put_deltas, put_ivs = [-0.1, -0.3, -0.5], [0.20, 0.17, 0.15]
    # 25-delta call IV: 0.1225 (between 0.4 and 0.2); put: 0.1775 (between -0.1 and -0.3).
    assert metrics.skew_25_delta(call_deltas, call_ivs, put_deltas, put_ivs) == pytest.approx(5.5)
    assert metrics.skew_25_delta([0.6, 0.5], [0.1, 0.1], put_deltas, put_ivs) is None
    assert metrics.iv_at_delta([0.3, None, 0.2], [0.1, 0.2, None], 0.25) is None


def test_gamma_exposure_is_long_calls_short_puts_per_one_percent():
    assert metrics.gamma_exposure(0.001, 1000, 0.0005, 1000, 100.0) == pytest.approx((1.0 - 0.5) * 100.0)
    assert metrics.gamma_exposure(None, 1000, None, 50, 100.0) == 0.0


def test_rollover_pressure_is_the_share_left_to_roll_per_day():
    assert metrics.rollover_pressure(40.0, 2.0) == (30.0, "high")
    assert metrics.rollover_pressure(60.0, 4.0) == (10.0, "moderate")
    assert metrics.rollover_pressure(90.0, 20.0) == (0.5, "low")
    # The last half day still counts as one day, never a division by zero.
    assert metrics.rollover_pressure(50.0, 0.0) == (50.0, "high")
    assert metrics.rollover_pressure(None, 3.0) == (None, "unknown")
