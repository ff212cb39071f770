"""numba kernels of analytics.greeks: the same formulas as analytics.greeks_numpy, one compiled loop per call.

Imported only on first use by ``analytics.greeks`` (which documents the method); top-level
functions so that numba's on-disk cache (``cache=True``) spares later processes the compilation.
"""

import math

import numba
import numpy as np

# The constants live here, in this file's own source, because numba's cache is keyed on it alone:
# a value imported from analytics.greeks_numpy would stay frozen in a stale cache. analytics.greeks
# checks on first use that each of them equals analytics.greeks_numpy's (SHARED_CONSTANTS).
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
_MAX_STEPS = 20
_STEP_TOLERANCE = 1e-3
_GUESS_NODES = 128
_ERFCX_INTERVALS = 100
_ERFCX_DEGREE = 7
_ERFCX_ASYMPTOTIC_FROM = 50.0
SHARED_CONSTANTS = (
    "IV_OK",
    "IV_BELOW_INTRINSIC",
    "IV_ABOVE_MAXIMUM",
    "IV_BAD_INPUT",
    "IV_AT_INTRINSIC",
    "DAYS_PER_YEAR",
    "_SQRT2",
    "_INV_SQRT2",
    "_INV_SQRT_2PI",
    "_SQRT_2_OVER_PI",
    "_INV_SQRT_PI",
    "_MAX_STEPS",
    "_STEP_TOLERANCE",
    "_GUESS_NODES",
    "_ERFCX_INTERVALS",
    "_ERFCX_DEGREE",
    "_ERFCX_ASYMPTOTIC_FROM",
)

jit = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


@jit
def erfcx_positive(z, table):
    if z >= _ERFCX_ASYMPTOTIC_FROM:
        # Continued-fraction tail, exact to double precision from z = 50.
        z2 = z * z
        return _INV_SQRT_PI * (z2 * (z2 + 4.5) + 2.0) / (z * (z2 * (z2 + 5.0) + 3.75))
    y = 4.0 / (4.0 + z)
    piece = int(y * _ERFCX_INTERVALS)
    if piece >= _ERFCX_INTERVALS:
        piece = _ERFCX_INTERVALS - 1
    u = (y - (piece + 0.5) / _ERFCX_INTERVALS) * (2.0 * _ERFCX_INTERVALS)
    value = table[piece, _ERFCX_DEGREE]
    for k in range(_ERFCX_DEGREE - 1, -1, -1):
        value = value * u + table[piece, k]
    return value


@jit
def inverse_cdf_rough(p):
    # Abramowitz & Stegun 26.2.23 (|error| < 4.5e-4), for p in (0, 0.5]: an initial guess only.
    w = math.sqrt(-2.0 * math.log(p))
    return -(w - (2.515517 + w * (0.802853 + w * 0.010328)) / (1.0 + w * (1.432788 + w * (0.189269 + w * 0.001308))))


@jit
def otm_time_value(x_otm, s, table):
    h = x_otm / s
    half_s = 0.5 * s
    envelope = math.exp(-0.5 * (h * h + half_s * half_s))
    z1 = (h + half_s) * _INV_SQRT2
    z2 = -(h - half_s) * _INV_SQRT2
    if z1 <= 0.0:
        return 0.5 * envelope * (erfcx_positive(-z1, table) - erfcx_positive(z2, table)), envelope
    return math.exp(0.5 * x_otm) - 0.5 * envelope * (erfcx_positive(z1, table) + erfcx_positive(z2, table)), envelope


@jit
def start(x, beta, distance, half_exp, table, guess_table):
    """Objective, bracket and initial guess for the OTM call at x <= 0 with normalised price beta.

    distance = half_exp - beta, half_exp = exp(x/2). Returns (lower, target, s, low, high).
    """
    root_abs_x = math.sqrt(-x)
    s_c = _SQRT2 * root_abs_x
    lower = False
    b_c = 0.0
    if x < 0.0:
        # b at s_c, where d1 = 0 and d2 = -s_c
        b_c = 0.5 * half_exp * (1.0 - erfcx_positive(root_abs_x, table))
        lower = beta < b_c
    if lower:
        target = math.log(beta)
        a = root_abs_x / (root_abs_x + 0.5) * _GUESS_NODES
        v = math.sqrt(math.log(b_c) / target) * _GUESS_NODES
        i = min(int(a), _GUESS_NODES - 1)
        j = min(int(v), _GUESS_NODES - 1)
        wa, wv = a - i, v - j
        u = (guess_table[i, j] * (1.0 - wv) + guess_table[i, j + 1] * wv) * (1.0 - wa) + (
            guess_table[i + 1, j] * (1.0 - wv) + guess_table[i + 1, j + 1] * wv
        ) * wa
        s = u * s_c
        if not (s > 0.0 and s < s_c):
            s = 0.5 * s_c
        return True, target, s, 0.0, s_c
    target = math.log(distance)
    p = distance / (half_exp + 1.0 / half_exp)
    s = -2.0 * inverse_cdf_rough(p) if p < 0.5 else 2.0 * s_c + 1.0
    if not (s > s_c and s < math.inf):
        s = max(2.0 * s_c, 1.0)
    return False, target, s, s_c, math.inf


@jit
def step(x, s, target, lower, low, high, table):
    """One safeguarded Householder step: (new s, low, high, converged)."""
    inverse_s = 1.0 / s
    h = x * inverse_s
    half_s = 0.5 * s
    exponent = -0.5 * (h * h + half_s * half_s)
    z1 = (h + half_s) * _INV_SQRT2
    z2 = -(h - half_s) * _INV_SQRT2
    if lower:
        pair = erfcx_positive(max(-z1, 0.0), table) - erfcx_positive(z2, table)
    else:
        pair = erfcx_positive(max(z1, 0.0), table) + erfcx_positive(z2, table)
    if pair <= 0.0:
        # b underflowed to nothing: the root lies above s.
        low = s
        return (0.5 * (low + high) if high < math.inf else 2.0 * s), low, high, high - low <= 1e-15 * s
    log_value = exponent + math.log(0.5 * pair)
    slope = _SQRT_2_OVER_PI / pair
    g = log_value - target if lower else target - log_value
    if g == 0.0:
        return s, low, high, True
    if g < 0.0:
        low = s
    else:
        high = s
    h_over_s = h * h * inverse_s
    curvature = h_over_s - 0.25 * s
    third = curvature * curvature - 3.0 * h_over_s * inverse_s - 0.25
    signed = -slope if lower else slope
    h2 = curvature + signed
    h3 = third + 3.0 * curvature * signed + 2.0 * slope * slope
    newton = -g / slope
    change = newton * (1.0 + 0.5 * h2 * newton) / (1.0 + newton * (h2 + h3 * newton / 6.0))
    if abs(change) <= _STEP_TOLERANCE * s:
        # Converged: the step may round onto the bracket's edge, which is the root itself.
        return min(max(s + change, low), high), low, high, True
    candidate = s + change
    if candidate > low and candidate < high:
        return candidate, low, high, False
    s = 0.5 * (low + high) if high < math.inf else 2.0 * max(s, low)
    return s, low, high, high - low <= 1e-15 * s


@jit
def greeks_at(forward, t, sqrt_t, s, log_moneyness, discount, rate, sign, price, table, out, i):
    vol = s / sqrt_t
    h = log_moneyness / s
    d1 = h + 0.5 * s
    envelope_d1 = math.exp(-0.5 * (h * h + 0.25 * s * s) - 0.5 * log_moneyness)
    discounted_density = discount * _INV_SQRT_2PI * envelope_d1
    signed_d1 = sign * d1
    tail = 0.5 * envelope_d1 * erfcx_positive(abs(signed_d1) * _INV_SQRT2, table)
    cdf = tail if signed_d1 <= 0.0 else 1.0 - tail
    out[0, i] = sign * discount * cdf
    out[1, i] = discounted_density / (forward * s)
    out[2, i] = (rate * price - 0.5 * discounted_density * forward * vol / sqrt_t) / DAYS_PER_YEAR
    out[3, i] = discounted_density * forward * sqrt_t / 100.0
    out[4, i] = -t * price / 100.0


@jit
def price_kernel(forward, strike, t, vol, rate, is_call, table, out):
    for i in range(forward.size):
        f, k = forward[i], strike[i]
        sign = 1.0 if is_call[i] else -1.0
        intrinsic = max(sign * (f - k), 0.0)
        s = vol[i] * math.sqrt(t[i])
        time_value = 0.0
        if s > 0.0:
            time_value, _ = otm_time_value(-abs(math.log(f / k)), s, table)
        elif s != 0.0:
            time_value = math.nan
        out[i] = math.exp(-rate[i] * t[i]) * (intrinsic + math.sqrt(f * k) * time_value)


@jit
def greeks_kernel(forward, strike, t, vol, rate, is_call, table, out):
    # The premium (theta and rho need it) in the same pass: one read of the inputs, and
    # log(F/K), sqrt(t) and the discount computed once for both.
    for i in range(forward.size):
        f, k, ti, r = forward[i], strike[i], t[i], rate[i]
        sign = 1.0 if is_call[i] else -1.0
        sqrt_t = math.sqrt(ti)
        s = vol[i] * sqrt_t
        log_moneyness = math.log(f / k)
        discount = math.exp(-r * ti)
        time_value = math.nan
        if s > 0.0:
            time_value, _ = otm_time_value(-abs(log_moneyness), s, table)
        price = discount * (max(sign * (f - k), 0.0) + math.sqrt(f * k) * time_value)
        greeks_at(f, ti, sqrt_t, s, log_moneyness, discount, r, sign, price, table, out, i)


@jit
def implied_vol_kernel(price, forward, strike, t, rate, is_call, table, guess_table, iv, reason, with_greeks, greeks):
    # Pass by pass over all options rather than option by option: each pass's iterations are
    # independent, so the CPU overlaps their long dependency chains (about 3x faster).
    n = price.size
    pending = np.empty(n, dtype=np.int64)
    x_of = np.empty(n)
    s_of = np.empty(n)
    target_of = np.empty(n)
    low_of = np.empty(n)
    high_of = np.empty(n)
    lower_of = np.empty(n, dtype=np.bool_)
    log_moneyness_of = np.empty(n)
    discount_of = np.empty(n)
    count = 0
    for i in range(n):
        p, f, k, ti, r = price[i], forward[i], strike[i], t[i], rate[i]
        iv[i] = math.nan
        if with_greeks:
            for g in range(5):
                greeks[g, i] = math.nan
        if not (
            math.isfinite(p)
            and math.isfinite(f)
            and math.isfinite(k)
            and math.isfinite(ti)
            and math.isfinite(r)
            and f > 0.0
            and k > 0.0
            and ti > 0.0
            and p >= 0.0
        ):
            reason[i] = IV_BAD_INPUT
            continue
        sign = 1.0 if is_call[i] else -1.0
        growth = math.exp(r * ti)
        time_value = p * growth - max(sign * (f - k), 0.0)
        maximum_time_value = min(f, k)
        if time_value < 0.0:
            reason[i] = IV_BELOW_INTRINSIC
            continue
        if time_value == 0.0:
            reason[i] = IV_AT_INTRINSIC
            continue
        if time_value >= maximum_time_value:
            reason[i] = IV_ABOVE_MAXIMUM
            continue
        reason[i] = IV_OK
        inverse_root_fk = 1.0 / math.sqrt(f * k)
        log_moneyness = math.log(f / k)
        log_moneyness_of[i] = log_moneyness
        discount_of[i] = 1.0 / growth
        x = -abs(log_moneyness)
        lower, target, s, low, high = start(
            x,
            time_value * inverse_root_fk,
            (maximum_time_value - time_value) * inverse_root_fk,
            maximum_time_value * inverse_root_fk,
            table,
            guess_table,
        )
        x_of[i], s_of[i], target_of[i], low_of[i], high_of[i], lower_of[i] = x, s, target, low, high, lower
        pending[count] = i
        count += 1
    solved = pending[:count].copy()
    for _ in range(_MAX_STEPS):
        still = 0
        for j in range(count):
            i = pending[j]
            s, low, high, done = step(x_of[i], s_of[i], target_of[i], lower_of[i], low_of[i], high_of[i], table)
            s_of[i], low_of[i], high_of[i] = s, low, high
            if not done:
                pending[still] = i
                still += 1
        count = still
        if count == 0:
            break
    for j in range(solved.size):
        i = solved[j]
        ti = t[i]
        sqrt_t = math.sqrt(ti)
        s = s_of[i]
        iv[i] = s / sqrt_t
        if with_greeks:
            f = forward[i]
            greeks_at(
                f,
                ti,
                sqrt_t,
                s,
                log_moneyness_of[i],
                discount_of[i],
                rate[i],
                1.0 if is_call[i] else -1.0,
                price[i],
                table,
                greeks,
                i,
            )
