"""The chain, depth, futures-signal and rollover metrics, as pure functions of numbers (no ORM, no HTTP).

Definitions (the API docs repeat them):
- spread = ask - bid; spread_bps = spread / mid x 10,000; microprice = (bid x ask_qty + ask x bid_qty) /
  (bid_qty + ask_qty), the mid leaning to the side with less waiting.
- liquidity_score, 0-100: half from the spread (100 bps or wider scores 0, a zero spread 50) and half
  from the thinner side's 5-level depth on a log scale (1 unit scores 0, 100,000 units or more 50).
- max pain: the strike at which the options' holders would be paid least at expiry.
- 25-delta skew: IV of the 25-delta put minus IV of the 25-delta call (interpolated on delta), in vol points.
- gamma exposure per strike: (call gamma x call OI - put gamma x put OI) x forward^2 x 1%: the change in
  option dealers' delta, in rupees, for a 1% move, assuming dealers are long the calls and short the puts.
- position signals: price up and OI up = long buildup, price down and OI up = short buildup, price up and
  OI down = short covering, price down and OI down = long unwinding; a change smaller than its threshold
  (either one) is neutral.
"""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPREAD_ZERO_SCORE_BPS = 100.0
DEPTH_FULL_SCORE_UNITS = 100_000


@dataclass(frozen=True)
class Depth:
    spread: float | None
    spread_bps: float | None
    microprice: float | None
    liquidity_score: float


def depth_metrics(
    bid: float | None, ask: float | None, bid_quantity: int, ask_quantity: int, depth_bid: int, depth_ask: int
) -> Depth:
    thinner_side = max(min(depth_bid, depth_ask), 0)
    depth_score = 50.0 * min(math.log10(1 + thinner_side) / math.log10(1 + DEPTH_FULL_SCORE_UNITS), 1.0)
    if not bid or not ask or ask < bid:
        # Without a two-sided market there is nothing to trade at: no liquidity at all.
        return Depth(None, None, None, 0.0)
    spread = ask - bid
    mid = (ask + bid) / 2
    spread_bps = spread / mid * 10_000
    waiting = bid_quantity + ask_quantity
    microprice = (bid * ask_quantity + ask * bid_quantity) / waiting if waiting else mid
    spread_score = 50.0 * max(0.0, 1 - spread_bps / SPREAD_ZERO_SCORE_BPS)
    return Depth(spread, spread_bps, microprice, round(spread_score + depth_score, 2))


def max_pain_strike(strikes: Sequence[float], call_oi: Sequence[float], put_oi: Sequence[float]) -> float | None:
    """The settlement strike that pays the options' holders least (over the listed strikes)."""
    if not len(strikes):
        return None
    strike = np.asarray(strikes, dtype=float)
    settle = strike[:, None]
    payout = (np.maximum(settle - strike, 0) * np.asarray(call_oi, dtype=float)).sum(axis=1)
    payout += (np.maximum(strike - settle, 0) * np.asarray(put_oi, dtype=float)).sum(axis=1)
    return float(strike[int(np.argmin(payout))])


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def iv_at_delta(deltas: Sequence[float | None], ivs: Sequence[float | None], target: float) -> float | None:
    """IV at `target` delta, interpolated linearly on delta; None outside the quoted range."""
    pairs = sorted((d, v) for d, v in zip(deltas, ivs, strict=True) if d is not None and v is not None)
    if len(pairs) < 2 or not pairs[0][0] <= target <= pairs[-1][0]:
        return None
    delta, iv = zip(*pairs, strict=True)
    return float(np.interp(target, delta, iv))


def skew_25_delta(call_deltas, call_ivs, put_deltas, put_ivs) -> float | None:
    put_iv = iv_at_delta(put_deltas, put_ivs, -0.25)
    call_iv = iv_at_delta(call_deltas, call_ivs, 0.25)
    if put_iv is None or call_iv is None:
        return None
    return (put_iv - call_iv) * 100


def gamma_exposure(
    call_gamma: float | None, call_oi: int, put_gamma: float | None, put_oi: int, forward: float
) -> float:
    return ((call_gamma or 0.0) * call_oi - (put_gamma or 0.0) * put_oi) * forward * forward * 0.01


# --- futures -----------------------------------------------------------------------------------

LONG_BUILDUP, SHORT_BUILDUP = "long_buildup", "short_buildup"
SHORT_COVERING, LONG_UNWINDING, NEUTRAL = "short_covering", "long_unwinding", "neutral"
SIGNALS = (LONG_BUILDUP, SHORT_BUILDUP, SHORT_COVERING, LONG_UNWINDING, NEUTRAL)


def percent_change(before: float, after: float) -> float | None:
    return (after - before) / before * 100 if before else None


def classify(
    price_change_pct: float | None, oi_change_pct: float | None, *, price_threshold: float, oi_threshold: float
) -> str:
    if price_change_pct is None or oi_change_pct is None:
        return NEUTRAL
    if abs(price_change_pct) < price_threshold or abs(oi_change_pct) < oi_threshold:
        return NEUTRAL
    if oi_change_pct > 0:
        return LONG_BUILDUP if price_change_pct > 0 else SHORT_BUILDUP
    return SHORT_COVERING if price_change_pct > 0 else LONG_UNWINDING


@dataclass(frozen=True)
class SignalPoint:
    t: object
    price: float
    oi: int
    price_change_pct: float | None
    oi_change_pct: float | None
    signal: str


def position_signals(
    series: Sequence[tuple[object, float, int]], *, price_threshold: float, oi_threshold: float
) -> list[SignalPoint]:
    """A signal for each (t, price, oi) after the first, from its change against the one before."""
    points = []
    for (_, price_before, oi_before), (t, price, oi) in itertools.pairwise(series):
        price_change = percent_change(price_before, price)
        oi_change = percent_change(oi_before, oi)
        signal = classify(price_change, oi_change, price_threshold=price_threshold, oi_threshold=oi_threshold)
        points.append(SignalPoint(t, price, oi, price_change, oi_change, signal))
    return points


ROLLOVER_PRESSURE_HIGH, ROLLOVER_PRESSURE_MODERATE = 20.0, 8.0


def rollover_pressure(rollover_pct: float | None, days_to_expiry: float) -> tuple[float | None, str]:
    """The share of open interest still to roll, per day left to the near expiry (percent a day) and a label."""
    if rollover_pct is None:
        return None, "unknown"
    per_day = (100.0 - rollover_pct) / max(days_to_expiry, 1.0)
    if per_day >= ROLLOVER_PRESSURE_HIGH:
        return per_day, "high"
    if per_day >= ROLLOVER_PRESSURE_MODERATE:
        return per_day, "moderate"
    return per_day, "low"
