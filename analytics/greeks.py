"""Black-76 and Black-Scholes prices, Greeks and implied volatility on whole arrays.

Conventions, for every function here: ``t`` in years, ``vol`` a fraction (0.2 is 20%), ``rate``
continuously compounded, ``is_call`` a bool array or scalar; every argument broadcasts against
the others and the result has the broadcast shape (0-d arrays for all-scalar input). Prices are
premiums discounted with ``exp(-rate * t)``; Black-76 Greeks are taken on the forward.

Implied volatility works in Jäckel's normalised coordinates (x = ln(F/K), s = vol * sqrt(t),
price divided by sqrt(F K)). Every option is first turned into the out-of-the-money call with the
same time value (put-call symmetry: b_put(x, s) = b_call(-x, s), and the in-the-money time value
is the out-of-the-money price), so only x <= 0 has to be solved. Below the inflection point
s_c = sqrt(2|x|) the price is solved on its logarithm, evaluated through erfcx so that prices far
below 1e-300 neither underflow nor cancel; above it on the logarithm of the distance to the upper
bound exp(x/2), evaluated without subtraction. Each of the two objectives is nearly linear in s
from an asymptotic initial guess, and third-order (Householder) steps inside a bisection bracket
reach machine precision in two to four steps.
"""

from dataclasses import dataclass

import numpy as np
from scipy.special import erfcx, ndtr, ndtri

IV_OK = 0
IV_BELOW_INTRINSIC = 1
IV_ABOVE_MAXIMUM = 2
IV_BAD_INPUT = 3
IV_AT_INTRINSIC = 4

IV_REASONS = {
    IV_OK: "ok",
    IV_BELOW_INTRINSIC: "price below intrinsic value: no volatility gives it",
    IV_ABOVE_MAXIMUM: "price at or above the no-arbitrage maximum (forward for a call, strike for a put, discounted)",
    IV_BAD_INPUT: "bad input: forward, strike and time must be positive, the price non-negative, all finite",
    IV_AT_INTRINSIC: "price equals intrinsic value: no time value left to imply a volatility from",
}

DAYS_PER_YEAR = 365.0

_SQRT_2PI = np.sqrt(2.0 * np.pi)
_INV_SQRT_2PI = 1.0 / _SQRT_2PI
_INV_SQRT2 = 1.0 / np.sqrt(2.0)
_SQRT3 = np.sqrt(3.0)
_MAX_STEPS = 16


@dataclass(frozen=True)
class Greeks:
    """Black-76 sensitivities of the discounted premium.

    delta: per unit of forward; gamma: per unit of forward squared; theta: per calendar day
    (value lost as one day passes, forward and vol fixed); vega: per 1 vol point (0.01);
    rho: per 1 point of rate (0.01), forward fixed.
    """

    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray


@dataclass(frozen=True)
class IVResult:
    """Implied volatility per option (NaN where there is none) and why (``IV_REASONS``)."""

    iv: np.ndarray
    reason: np.ndarray


def _as_arrays(*args):
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in args[:-1]), np.asarray(args[-1], dtype=bool))
    return arrays


def black76_price(forward, strike, t, vol, rate, is_call) -> np.ndarray:
    """Discounted Black-76 premium of a European option on the forward."""
    forward, strike, t, vol, rate, is_call = _as_arrays(forward, strike, t, vol, rate, is_call)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sign = np.where(is_call, 1.0, -1.0)
        stdev = vol * np.sqrt(t)
        d1 = np.log(forward / strike) / stdev + 0.5 * stdev
        d2 = d1 - stdev
        undiscounted = sign * (forward * ndtr(sign * d1) - strike * ndtr(sign * d2))
        # At zero vol or zero time the premium is the discounted intrinsic value.
        intrinsic = np.maximum(sign * (forward - strike), 0.0)
        undiscounted = np.where(stdev > 0.0, undiscounted, intrinsic)
        return np.exp(-rate * t) * undiscounted


def black_scholes_price(spot, strike, t, vol, rate, is_call) -> np.ndarray:
    """Black-Scholes premium on spot with no dividend: Black-76 on the forward spot * exp(rate * t)."""
    spot, strike, t, vol, rate, is_call = _as_arrays(spot, strike, t, vol, rate, is_call)
    return black76_price(spot * np.exp(rate * t), strike, t, vol, rate, is_call)


def black76_greeks(forward, strike, t, vol, rate, is_call) -> Greeks:
    """Delta, gamma, theta (per day), vega (per vol point) and rho (per rate point) of Black-76."""
    forward, strike, t, vol, rate, is_call = _as_arrays(forward, strike, t, vol, rate, is_call)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sign = np.where(is_call, 1.0, -1.0)
        sqrt_t = np.sqrt(t)
        stdev = vol * sqrt_t
        d1 = np.log(forward / strike) / stdev + 0.5 * stdev
        d2 = d1 - stdev
        discount = np.exp(-rate * t)
        n_d1 = ndtr(sign * d1)
        density = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
        price = discount * sign * (forward * n_d1 - strike * ndtr(sign * d2))
        discounted_density = discount * density
        delta = sign * discount * n_d1
        gamma = discounted_density / (forward * stdev)
        vega = discounted_density * forward * sqrt_t
        theta = rate * price - 0.5 * discounted_density * forward * vol / sqrt_t
        rho = -t * price
        return Greeks(
            delta=delta,
            gamma=gamma,
            theta=theta / DAYS_PER_YEAR,
            vega=vega / 100.0,
            rho=rho / 100.0,
        )


def _lower_terms(x, s):
    """ln b and b'/b of the OTM call (x < 0) for s <= sqrt(2|x|), by erfcx: no underflow, little cancellation."""
    h = x / s
    half_s = 0.5 * s
    scaled_difference = erfcx(-(h + half_s) * _INV_SQRT2) - erfcx(-(h - half_s) * _INV_SQRT2)
    log_b = -0.5 * (h * h + half_s * half_s) + np.log(0.5 * scaled_difference)
    vega_over_b = np.sqrt(2.0 / np.pi) / scaled_difference
    return log_b, vega_over_b


def _upper_terms(x, s):
    """ln(bmax - b) and b'/(bmax - b) of the OTM call (x <= 0) where bmax = exp(x/2): no subtraction."""
    h = x / s
    half_s = 0.5 * s
    distance = np.exp(0.5 * x) * ndtr(-(h + half_s)) + np.exp(-0.5 * x) * ndtr(h - half_s)
    vega = _INV_SQRT_2PI * np.exp(-0.5 * (h * h + half_s * half_s))
    return np.log(distance), vega / distance


def _solve_normalised(x, target_log, lower):
    """Normalised vol s with the OTM-call price matching ``target_log`` (see ``implied_vol_black76``)."""
    s_c = np.sqrt(-2.0 * x)
    abs_x = -x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        # Asymptotic initial guesses: below s_c, b ~ 2 pi |x| / (3 sqrt 3) * N(-|x| / (sqrt 3 s))^3
        # (Jäckel 2015, eq. 4.5); above it, bmax - b ~ (exp(x/2) + exp(-x/2)) N(-s/2).
        q = np.cbrt(np.exp(target_log) * 3.0 * _SQRT3 / (2.0 * np.pi * abs_x))
        guess_lower = abs_x / (_SQRT3 * -ndtri(np.minimum(q, 0.5)))
        guess_upper = -2.0 * ndtri(np.exp(target_log) / (np.exp(0.5 * x) + np.exp(-0.5 * x)))
        s = np.where(lower, guess_lower, guess_upper)
        low = np.where(lower, 0.0, s_c)
        high = np.where(lower, s_c, np.inf)
        s = np.where(np.isfinite(s) & (s > low) & (s < high), s, np.where(lower, 0.5 * s_c, np.maximum(2.0 * s_c, 1.0)))

        active = np.arange(x.size)
        for _ in range(_MAX_STEPS):
            xa, sa, la = x[active], s[active], lower[active]
            log_value = np.empty_like(sa)
            slope = np.empty_like(sa)
            if la.any():
                log_value[la], slope[la] = _lower_terms(xa[la], sa[la])
            up = ~la
            if up.any():
                log_value[up], slope[up] = _upper_terms(xa[up], sa[up])
            # Objective g: ln b - ln target below s_c (increasing), ln target - ln(bmax - b) above (increasing).
            g = np.where(la, log_value - target_log[active], target_log[active] - log_value)
            vega_curvature = xa * xa / (sa * sa * sa) - 0.25 * sa  # b''/b'
            vega_third = vega_curvature * vega_curvature - 3.0 * xa * xa / (sa * sa * sa * sa) - 0.25  # b'''/b'
            signed = np.where(la, -slope, slope)
            h2 = vega_curvature + signed
            h3 = vega_third + 3.0 * vega_curvature * signed + 2.0 * slope * slope
            newton = -g / slope
            step = newton * (1.0 + 0.5 * h2 * newton) / (1.0 + newton * (h2 + h3 * newton / 6.0))
            # Keep the bracket: g < 0 means the root lies above s.
            below_root = g < 0.0
            low[active] = np.where(below_root, np.maximum(low[active], sa), low[active])
            high[active] = np.where(below_root, high[active], np.minimum(high[active], sa))
            candidate = sa + step
            la_low, la_high = low[active], high[active]
            inside = np.isfinite(candidate) & (candidate > la_low) & (candidate < la_high)
            bisected = np.where(np.isfinite(la_high), 0.5 * (la_low + la_high), 2.0 * np.maximum(sa, la_low))
            new_s = np.where(g == 0.0, sa, np.where(inside, candidate, bisected))
            s[active] = new_s
            done = (np.abs(new_s - sa) <= 1e-14 * new_s) | (g == 0.0)
            active = active[~done]
            if active.size == 0:
                break
    return s


def implied_vol_black76(price, forward, strike, t, rate, is_call) -> IVResult:
    """Black-76 implied volatility of discounted premiums; NaN with a reason where there is none."""
    price, forward, strike, t, rate, is_call = _as_arrays(price, forward, strike, t, rate, is_call)
    shape = price.shape
    price, forward, strike, t, rate, is_call = (a.ravel() for a in (price, forward, strike, t, rate, is_call))
    iv = np.full(price.shape, np.nan)
    reason = np.full(price.shape, IV_OK, dtype=np.int8)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        good = (
            np.isfinite(price)
            & np.isfinite(forward)
            & np.isfinite(strike)
            & np.isfinite(t)
            & np.isfinite(rate)
            & (forward > 0.0)
            & (strike > 0.0)
            & (t > 0.0)
            & (price >= 0.0)
        )
        reason[~good] = IV_BAD_INPUT
        sign = np.where(is_call, 1.0, -1.0)
        undiscounted = price * np.exp(rate * t)
        # The time value is the price of the out-of-the-money option of the same strike.
        time_value = undiscounted - np.maximum(sign * (forward - strike), 0.0)
        maximum_time_value = np.minimum(forward, strike)
        below = good & (time_value < 0.0)
        at_intrinsic = good & (time_value == 0.0)
        above = good & (time_value >= maximum_time_value)
        reason[below] = IV_BELOW_INTRINSIC
        reason[at_intrinsic] = IV_AT_INTRINSIC
        reason[above] = IV_ABOVE_MAXIMUM
        solve = good & ~below & ~at_intrinsic & ~above
        if solve.any():
            f, k = forward[solve], strike[solve]
            root_fk = np.sqrt(f * k)
            x = -np.abs(np.log(f / k))
            beta = time_value[solve] / root_fk
            s_c = np.sqrt(-2.0 * x)
            log_b_c, _ = _lower_terms(x, s_c)
            lower = (x < 0.0) & (np.log(beta) < log_b_c)
            # Below s_c the target is ln b; above it ln(bmax - b), bmax - beta taken in price units.
            distance = (maximum_time_value[solve] - time_value[solve]) / root_fk
            target_log = np.where(lower, np.log(beta), np.log(distance))
            s = _solve_normalised(x, target_log, lower)
            iv[solve] = s / np.sqrt(t[solve])
    return IVResult(iv=iv.reshape(shape), reason=reason.reshape(shape))
