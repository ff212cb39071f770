"""Black-76 and Black-Scholes prices, Greeks and implied volatility on whole arrays.

Conventions, for every function here: ``t`` in years, ``vol`` a fraction (0.2 is 20%), ``rate``
continuously compounded, ``is_call`` a bool array or scalar; every argument broadcasts against
the others and the result has the broadcast shape (0-d arrays for all-scalar input). Prices are
premiums discounted with ``exp(-rate * t)``; Black-76 Greeks are taken on the forward.

The method works in Jäckel's normalised coordinates: x = ln(F/K), s = vol * sqrt(t), prices
divided by sqrt(F K). Every option is priced and solved as intrinsic value plus the price of the
out-of-the-money option of the same strike (put-call symmetry: b_put(x, s) = b_call(-x, s)), so
only the out-of-the-money call, x <= 0, is ever evaluated, and a deep in-the-money premium keeps
its time value. With h = x/s and E = exp(-(h^2 + s^2/4)/2) that price is

    b = E/2 * (erfcx(-d1/sqrt2) - erfcx(-d2/sqrt2))            below s_c = sqrt(2|x|) (d1 <= 0)
    b = exp(x/2) - E/2 * (erfcx(d1/sqrt2) + erfcx(-d2/sqrt2))   above it,

where every erfcx argument is non-negative: no exponential underflows (a price of 1e-300 is
solved like any other) and nothing cancels but the time value itself. Below s_c the solver
matches ln b, above it ln(exp(x/2) - b); both are nearly linear in s, and the logarithms and the
slopes b'/b come from the erfcx terms without one more exponential. Third-order (Householder)
steps run inside a bisection bracket. Below s_c, where nearly every listed option is, the initial
guess is read from a table of the solution itself (``_lower_guess_table``, about 1e-4 off), so
that one step, rarely two, gives machine precision; above it, an asymptotic guess and two to four
steps. Known limit: at the money with a vol below ~0.1% on a 1-day expiry the last ~4 digits of
the vol go (absolute error ~1e-14), as the solve there runs on ln(exp(x/2) - b).

Two implementations of the same formulas: numba kernels (analytics/greeks_numba.py: one
compiled pass over the options per stage, erfcx from a Chebyshev table fitted to scipy's at
import, compiled on first use and kept in numba's disk cache) and plain numpy/scipy vectorised
code. numba is used when it imports and compiles; otherwise, or with THOR_GREEKS_BACKEND=numpy,
the numpy code runs (about three times slower: see bench/README.md). ``BACKEND`` says which.
"""

import functools
import importlib.util
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import chebyshev


# scipy.special is imported on first use: it is most of this module's import time, and every Django process
# imports this module (through the analytics views) whether or not it ever values an option.
def erfcx(z):
    from scipy.special import erfcx as scipy_erfcx

    return scipy_erfcx(z)


def ndtri(p):
    from scipy.special import ndtri as scipy_ndtri

    return scipy_ndtri(p)


logger = logging.getLogger(__name__)

IV_OK = 0
IV_BELOW_INTRINSIC = 1
IV_ABOVE_MAXIMUM = 2
IV_BAD_INPUT = 3
IV_AT_INTRINSIC = 4

IV_REASONS = {
    IV_OK: "ok",
    IV_BELOW_INTRINSIC: "price below intrinsic value: no volatility gives it",
    IV_ABOVE_MAXIMUM: "price at or above the no-arbitrage maximum (the discounted forward for a call, strike for a put)",
    IV_BAD_INPUT: "bad input: forward, strike and time must be positive, the price non-negative, all finite",
    IV_AT_INTRINSIC: "price equals intrinsic value: no time value left to imply a volatility from",
}

DAYS_PER_YEAR = 365.0

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2 = 1.0 / _SQRT2
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_SQRT3 = math.sqrt(3.0)
_LOWER_GUESS_SCALE = 3.0 * _SQRT3 / (2.0 * math.pi)
_MAX_STEPS = 20
# A Householder step this small (relative) leaves an error of about its fourth power: stop after it.
_STEP_TOLERANCE = 1e-3
_GUESS_NODES = 128
_ERFCX_INTERVALS = 100
_ERFCX_DEGREE = 7
_ERFCX_ASYMPTOTIC_FROM = 50.0


@dataclass(frozen=True)
class Greeks:
    """Black-76 sensitivities of the discounted premium.

    delta: per unit of forward; gamma: per unit of forward, squared; theta: per calendar day
    (the value lost as one day passes, forward and vol held); vega: per 1 vol point (0.01);
    rho: per 1 point of rate (0.01), forward held.
    """

    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray


@dataclass(frozen=True)
class IVResult:
    """Implied volatility per option (NaN where there is none) and why (a key of ``IV_REASONS``)."""

    iv: np.ndarray
    reason: np.ndarray


def _broadcast(*values, bool_last=True):
    """Flat float64 arrays of the broadcast shape (the last one bool), and that shape."""
    arrays = [np.asarray(v, dtype=float) for v in (values[:-1] if bool_last else values)]
    if bool_last:
        arrays.append(np.asarray(values[-1], dtype=bool))
    arrays = np.broadcast_arrays(*arrays)
    shape = arrays[0].shape
    return [np.ascontiguousarray(a).reshape(-1) for a in arrays], shape


# ---------------------------------------------------------------------------------------------
# numpy implementation (also the fallback where numba is missing or cannot compile)


def _np_otm_time_value(x_otm, s):
    """Normalised price of the out-of-the-money call (x_otm <= 0), and E (see the module doc)."""
    h = x_otm / s
    half_s = 0.5 * s
    exponent = -0.5 * (h * h + half_s * half_s)
    envelope = np.exp(exponent)
    z1 = (h + half_s) * _INV_SQRT2  # d1 / sqrt2
    z2 = -(h - half_s) * _INV_SQRT2  # -d2 / sqrt2 >= 0
    below = z1 <= 0.0
    lower = 0.5 * envelope * (erfcx(np.where(below, -z1, 0.0)) - erfcx(z2))
    upper = np.exp(0.5 * x_otm) - 0.5 * envelope * (erfcx(np.where(below, 0.0, z1)) + erfcx(z2))
    return np.where(below, lower, upper), envelope


def _np_cdf(d, envelope_d):
    """N(d) given exp(-d^2/2), accurate in both tails."""
    tail = 0.5 * envelope_d * erfcx(np.abs(d) * _INV_SQRT2)
    return np.where(d <= 0.0, tail, 1.0 - tail)


def _np_price(forward, strike, t, vol, rate, is_call):
    sign = np.where(is_call, 1.0, -1.0)
    s = vol * np.sqrt(t)
    log_moneyness = np.log(forward / strike)
    time_value, _ = _np_otm_time_value(-np.abs(log_moneyness), s)
    time_value = np.where(s > 0.0, time_value, 0.0)
    intrinsic = np.maximum(sign * (forward - strike), 0.0)
    return np.exp(-rate * t) * (intrinsic + np.sqrt(forward * strike) * time_value)


def _np_greeks(forward, strike, t, vol, rate, is_call, price):
    sign = np.where(is_call, 1.0, -1.0)
    sqrt_t = np.sqrt(t)
    s = vol * sqrt_t
    log_moneyness = np.log(forward / strike)
    h = log_moneyness / s
    d1 = h + 0.5 * s
    # exp(-d1^2/2) = E * exp(-x/2), E = exp(-(h^2 + s^2/4)/2)
    envelope_d1 = np.exp(-0.5 * (h * h + 0.25 * s * s) - 0.5 * log_moneyness)
    discount = np.exp(-rate * t)
    discounted_density = discount * _INV_SQRT_2PI * envelope_d1
    delta = sign * discount * _np_cdf(sign * d1, envelope_d1)
    gamma = discounted_density / (forward * s)
    vega = discounted_density * forward * sqrt_t
    theta = rate * price - 0.5 * discounted_density * forward * vol / sqrt_t
    rho = -t * price
    return delta, gamma, theta / DAYS_PER_YEAR, vega / 100.0, rho / 100.0


def _np_b_c(x):
    """Normalised OTM-call price at the inflection point s_c = sqrt(2|x|), where d1 = 0 and d2 = -s_c."""
    s_c = np.sqrt(-2.0 * x)
    return 0.5 * np.exp(0.5 * x) - 0.5 * np.exp(-0.5 * x - 0.5 * s_c * s_c) * erfcx(s_c * _INV_SQRT2)


def _np_table_guess(x, target_log, log_b_c, lower, table):
    """Bilinear interpolation of u = s/s_c in the lower region's (A, v) grid (see ``_lower_guess_table``)."""
    root_abs_x = np.sqrt(-x)
    a = np.where(lower, root_abs_x / (root_abs_x + 0.5), 0.0) * _GUESS_NODES
    v = np.where(lower, np.sqrt(log_b_c / target_log), 0.0) * _GUESS_NODES
    i = np.minimum(a.astype(np.intp), _GUESS_NODES - 1)
    j = np.minimum(v.astype(np.intp), _GUESS_NODES - 1)
    wa, wv = a - i, v - j
    u = (table[i, j] * (1.0 - wv) + table[i, j + 1] * wv) * (1.0 - wa) + (
        table[i + 1, j] * (1.0 - wv) + table[i + 1, j + 1] * wv
    ) * wa
    return u * np.sqrt(-2.0 * x)


@functools.cache
def _lower_guess_table():
    """u = s/s_c below the inflection point, on a grid of A = sqrt|x| / (sqrt|x| + 1/2) and v = sqrt(ln b_c / ln b).

    Both coordinates run over [0, 1] for every x < 0 and 0 < b < b_c, and u is smooth in them
    (u ~ v near v = 0, u = 1 at v = 1): a 128 x 128 bilinear table guesses s to about 1e-4
    (5e-3 at worst), so that one Householder step, rarely two, reaches machine precision. Built
    once per process (~20 ms) by the solver itself from Jäckel's cruder asymptotic guess.
    """
    nodes = np.linspace(0.0, 1.0, _GUESS_NODES + 1)
    a, v = np.meshgrid(np.clip(nodes, 1e-4, 1.0 - 1e-4), np.clip(nodes, 1e-4, 1.0), indexing="ij")
    root_abs_x = 0.5 * a / (1.0 - a)
    x = -(root_abs_x * root_abs_x)
    with np.errstate(all="ignore"):
        target_log = np.log(_np_b_c(x)) / (v * v)
        s = _np_solve(x.ravel(), target_log.ravel(), np.ones(x.size, dtype=bool)).reshape(x.shape)
    table = s / np.sqrt(-2.0 * x)
    table[:, 0] = 0.0
    table[:, -1] = 1.0
    return np.ascontiguousarray(table)


def _np_solve(x, target_log, lower, guess_lower=None):
    """Normalised vol s of the OTM call at x <= 0 matching ``target_log`` (ln b below s_c, else ln(bmax - b))."""
    s_c = np.sqrt(-2.0 * x)
    abs_x = -x
    if guess_lower is None:
        # Below s_c, b ~ 2 pi |x| / (3 sqrt 3) * N(-|x| / (sqrt 3 s))^3 (Jäckel 2015, eq. 4.5).
        q = np.cbrt(np.exp(target_log) * _LOWER_GUESS_SCALE / np.where(lower, abs_x, 1.0))
        guess_lower = abs_x / (_SQRT3 * -ndtri(np.minimum(q, 0.5)))
    # Above s_c, bmax - b ~ (exp(x/2) + exp(-x/2)) N(-s/2), exact at x = 0.
    guess_upper = -2.0 * ndtri(np.minimum(np.exp(target_log) / (np.exp(0.5 * x) + np.exp(-0.5 * x)), 0.5))
    s = np.where(lower, guess_lower, guess_upper)
    low = np.where(lower, 0.0, s_c)
    high = np.where(lower, s_c, np.inf)
    fallback = np.where(lower, 0.5 * s_c, np.maximum(2.0 * s_c, 1.0))
    s = np.where(np.isfinite(s) & (s > low) & (s < high), s, fallback)

    active = np.arange(x.size)
    for _ in range(_MAX_STEPS):
        xa, sa, la, target = x[active], s[active], lower[active], target_log[active]
        h = xa / sa
        half_s = 0.5 * sa
        exponent = -0.5 * (h * h + half_s * half_s)
        z1 = (h + half_s) * _INV_SQRT2
        z2 = -(h - half_s) * _INV_SQRT2
        # Inside the bracket z1 <= 0 below s_c and z1 >= 0 above it.
        pair = np.where(la, erfcx(np.maximum(-z1, 0.0)) - erfcx(z2), erfcx(np.maximum(z1, 0.0)) + erfcx(z2))
        usable = pair > 0.0
        pair = np.where(usable, pair, 1.0)
        log_value = exponent + np.log(0.5 * pair)
        slope = _SQRT_2_OVER_PI / pair
        # g increases with s: ln b - ln target below s_c, ln target - ln(bmax - b) above.
        g = np.where(la, log_value - target, target - log_value)
        g = np.where(usable, g, -np.inf)
        curvature = xa * xa / (sa * sa * sa) - 0.25 * sa  # b''/b'
        third = curvature * curvature - 3.0 * xa * xa / (sa * sa * sa * sa) - 0.25  # b'''/b'
        signed = np.where(la, -slope, slope)
        h2 = curvature + signed
        h3 = third + 3.0 * curvature * signed + 2.0 * slope * slope
        newton = -g / slope
        step = newton * (1.0 + 0.5 * h2 * newton) / (1.0 + newton * (h2 + h3 * newton / 6.0))
        below_root = g < 0.0
        low_a = np.where(below_root, np.maximum(low[active], sa), low[active])
        high_a = np.where(below_root, high[active], np.minimum(high[active], sa))
        low[active], high[active] = low_a, high_a
        candidate = sa + step
        # Converged: the step may round onto the bracket's edge, which is the root itself.
        converged = (g == 0.0) | (np.abs(step) <= _STEP_TOLERANCE * sa)
        inside = np.isfinite(candidate) & (candidate > low_a) & (candidate < high_a)
        bisected = np.where(np.isfinite(high_a), 0.5 * (low_a + high_a), 2.0 * np.maximum(sa, low_a))
        new_s = np.where(
            converged, np.clip(np.where(g == 0.0, sa, candidate), low_a, high_a), np.where(inside, candidate, bisected)
        )
        s[active] = new_s
        done = converged | (high_a - low_a <= 1e-15 * new_s)
        active = active[~done]
        if active.size == 0:
            break
    return s


def _np_implied_vol(price, forward, strike, t, rate, is_call):
    iv = np.full(price.shape, np.nan)
    reason = np.full(price.shape, IV_OK, dtype=np.int8)
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
        b_c = _np_b_c(x)
        lower = (x < 0.0) & (beta < b_c)
        distance = (maximum_time_value[solve] - time_value[solve]) / root_fk
        target_log = np.log(np.where(lower, beta, distance))
        guess = _np_table_guess(x, target_log, np.log(b_c), lower, _lower_guess_table())
        iv[solve] = _np_solve(x, target_log, lower, guess) / np.sqrt(t[solve])
    return iv, reason


# ---------------------------------------------------------------------------------------------
# numba implementation (analytics/greeks_numba.py): the same formulas, compiled


@functools.cache
def _erfcx_table():
    """Power-series coefficients of erfcx on 100 pieces of y = 4/(4+z), z in [0, 50]: ~2e-15 relative."""
    table = np.zeros((_ERFCX_INTERVALS, _ERFCX_DEGREE + 1))
    width = 1.0 / _ERFCX_INTERVALS
    first_used = int(4.0 / (4.0 + _ERFCX_ASYMPTOTIC_FROM) * _ERFCX_INTERVALS)
    for piece in range(first_used, _ERFCX_INTERVALS):
        centre = (piece + 0.5) * width

        def erfcx_on_piece(u, centre=centre):
            y = centre + 0.5 * width * u
            return erfcx(4.0 / y - 4.0)

        coefficients = chebyshev.cheb2poly(chebyshev.chebinterpolate(erfcx_on_piece, _ERFCX_DEGREE))
        table[piece, : coefficients.size] = coefficients
    return table


def _build_numba_kernels():
    from analytics import greeks_numba

    differing = [name for name in greeks_numba.SHARED_CONSTANTS if getattr(greeks_numba, name) != globals()[name]]
    if differing:
        raise RuntimeError(f"analytics.greeks_numba disagrees with analytics.greeks on {differing}")
    return greeks_numba


def _choose_backend():
    if os.environ.get("THOR_GREEKS_BACKEND", "numba").strip().lower() == "numpy":
        return "numpy"
    if importlib.util.find_spec("numba") is None:
        logger.info("numba is not installed: analytics.greeks uses its numpy implementation")
        return "numpy"
    return "numba"


BACKEND = _choose_backend()
# numba is imported, the kernels compiled (or loaded from numba's cache) and their erfcx table built on first
# use, not at import.
_KERNELS = None


def _run_numba(kernel_name, *args):
    """Run a numba kernel; a machine where numba cannot import or compile switches to numpy once, for good."""
    global BACKEND, _KERNELS
    try:
        if _KERNELS is None:
            _KERNELS = _build_numba_kernels()
        getattr(_KERNELS, kernel_name + "_kernel")(*args)
    except Exception:  # numba raises many types when a compiler is unusable
        logger.exception("numba could not compile analytics.greeks: switching to the numpy implementation")
        BACKEND = "numpy"
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Public interface


def black76_price(forward, strike, t, vol, rate, is_call) -> np.ndarray:
    """Discounted Black-76 premium of a European option on the forward (intrinsic at zero vol)."""
    (forward, strike, t, vol, rate, is_call), shape = _broadcast(forward, strike, t, vol, rate, is_call)
    if BACKEND == "numba":
        out = np.empty(forward.shape)
        if _run_numba("price", forward, strike, t, vol, rate, is_call, _erfcx_table(), out):
            return out.reshape(shape)
    with np.errstate(all="ignore"):
        return _np_price(forward, strike, t, vol, rate, is_call).reshape(shape)


def black_scholes_price(spot, strike, t, vol, rate, is_call) -> np.ndarray:
    """Black-Scholes premium on spot with no dividend: Black-76 on the forward spot * exp(rate * t)."""
    (spot, strike, t, vol, rate, is_call), shape = _broadcast(spot, strike, t, vol, rate, is_call)
    return black76_price(spot * np.exp(rate * t), strike, t, vol, rate, is_call).reshape(shape)


def black76_greeks(forward, strike, t, vol, rate, is_call) -> Greeks:
    """Delta, gamma, theta (per day), vega (per vol point) and rho (per rate point) of Black-76 (vol, t > 0)."""
    (forward, strike, t, vol, rate, is_call), shape = _broadcast(forward, strike, t, vol, rate, is_call)
    if BACKEND == "numba":
        out = np.empty((5, forward.size))
        if _run_numba("greeks", forward, strike, t, vol, rate, is_call, _erfcx_table(), out):
            return Greeks(*(row.reshape(shape) for row in out))
    with np.errstate(all="ignore"):
        price = _np_price(forward, strike, t, vol, rate, is_call)
        rows = _np_greeks(forward, strike, t, vol, rate, is_call, price)
    return Greeks(*(np.asarray(row).reshape(shape) for row in rows))


def implied_vol_black76(price, forward, strike, t, rate, is_call) -> IVResult:
    """Black-76 implied volatility of discounted premiums; NaN with a reason where there is none."""
    result, _ = _implied_vol(price, forward, strike, t, rate, is_call, with_greeks=False)
    return result


def implied_vol_and_greeks_black76(price, forward, strike, t, rate, is_call) -> tuple[IVResult, Greeks]:
    """``implied_vol_black76`` and ``black76_greeks`` at that vol in one pass (NaN Greeks where no IV).

    Theta and rho use the given premium, which the model reproduces at the implied vol.
    """
    return _implied_vol(price, forward, strike, t, rate, is_call, with_greeks=True)


def _implied_vol(price, forward, strike, t, rate, is_call, with_greeks):
    (price, forward, strike, t, rate, is_call), shape = _broadcast(price, forward, strike, t, rate, is_call)
    if BACKEND == "numba":
        iv = np.empty(price.shape)
        reason = np.empty(price.shape, dtype=np.int8)
        greeks = np.empty((5, price.size) if with_greeks else (5, 0))
        if _run_numba(
            "implied_vol",
            price,
            forward,
            strike,
            t,
            rate,
            is_call,
            _erfcx_table(),
            _lower_guess_table(),
            iv,
            reason,
            with_greeks,
            greeks,
        ):
            result = IVResult(iv=iv.reshape(shape), reason=reason.reshape(shape))
            return result, (Greeks(*(row.reshape(shape) for row in greeks)) if with_greeks else None)
    with np.errstate(all="ignore"):
        iv, reason = _np_implied_vol(price, forward, strike, t, rate, is_call)
        result = IVResult(iv=iv.reshape(shape), reason=reason.reshape(shape))
        if not with_greeks:
            return result, None
        rows = _np_greeks(forward, strike, t, iv, rate, is_call, np.where(np.isnan(iv), np.nan, price))
    return result, Greeks(*(np.asarray(row).reshape(shape) for row in rows))
