"""The numpy/scipy implementation of analytics.greeks, which documents the method: whole arrays at a time.

It runs where numba is missing or cannot compile, or with THOR_GREEKS_BACKEND=numpy. Its two
tables (``_lower_guess_table``, ``_erfcx_table``) also feed the numba kernels, and its constants are
the ones analytics/greeks_numba.py's copies are checked against. Arguments are the flat, broadcast
float64 (and bool) arrays analytics.greeks prepares; analytics.greeks reshapes the results.
"""

import functools
import math

import numpy as np
from numpy.polynomial import chebyshev


# scipy.special is imported on first use: it is most of the import time of this module and analytics.greeks, which
# every Django process imports (through the analytics views) whether or not it ever values an option.
def erfcx(z):
    from scipy.special import erfcx as scipy_erfcx

    return scipy_erfcx(z)


def ndtri(p):
    from scipy.special import ndtri as scipy_ndtri

    return scipy_ndtri(p)


# The reason codes and DAYS_PER_YEAR belong to analytics.greeks' interface (it re-exports them); they are defined
# here so that the code returning and using them need not import analytics.greeks back. analytics.greeks checks,
# on first use of numba, that analytics/greeks_numba.py's copy of each shared constant equals this module's.
IV_OK = 0
IV_BELOW_INTRINSIC = 1
IV_ABOVE_MAXIMUM = 2
IV_BAD_INPUT = 3
IV_AT_INTRINSIC = 4

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


# ---------------------------------------------------------------------------------------------
# The implementation (also the fallback where numba is missing or cannot compile)


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
# The erfcx table the numba kernels (analytics/greeks_numba.py) read, fitted to scipy's erfcx


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
