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
guess is read from a table of the solution itself (``greeks_numpy._lower_guess_table``, ~1e-4 off), so
that one step, rarely two, gives machine precision; above it, an asymptotic guess and two to four
steps. Known limit: at the money with a vol below ~0.1% on a 1-day expiry the last ~4 digits of
the vol go (absolute error ~1e-14), as the solve there runs on ln(exp(x/2) - b).

Two implementations of the same formulas: numba kernels (analytics/greeks_numba.py: one
compiled pass over the options per stage, erfcx from a Chebyshev table fitted to scipy's at
import, compiled on first use and kept in numba's disk cache) and plain numpy/scipy vectorised
code (analytics/greeks_numpy.py, which also builds the tables the kernels read). This module holds
the public interface and the choice between them: numba is used when it imports and compiles;
otherwise, or with THOR_GREEKS_BACKEND=numpy, the numpy code runs (about three times slower: see
bench/README.md). ``BACKEND`` says which.
"""

import importlib.util
import logging
import os
from dataclasses import dataclass

import numpy as np

from analytics import greeks_numpy
from analytics.greeks_numpy import (
    IV_ABOVE_MAXIMUM,
    IV_AT_INTRINSIC,
    IV_BAD_INPUT,
    IV_BELOW_INTRINSIC,
    IV_OK,
    _erfcx_table,
    _lower_guess_table,
    _np_greeks,
    _np_implied_vol,
    _np_price,
)

logger = logging.getLogger(__name__)

# Part of this module's interface, like the IV_* codes imported above: both are defined with the numpy
# implementation, which uses them.
DAYS_PER_YEAR = greeks_numpy.DAYS_PER_YEAR

IV_REASONS = {
    IV_OK: "ok",
    IV_BELOW_INTRINSIC: "price below intrinsic value: no volatility gives it",
    IV_ABOVE_MAXIMUM: "price at or above the no-arbitrage maximum (the discounted forward for a call, strike for a put)",
    IV_BAD_INPUT: "bad input: forward, strike and time must be positive, the price non-negative, all finite",
    IV_AT_INTRINSIC: "price equals intrinsic value: no time value left to imply a volatility from",
}


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
# Backend choice: the numba kernels (analytics/greeks_numba.py), the same formulas compiled, or numpy


def _build_numba_kernels():
    from analytics import greeks_numba

    differing = [
        name for name in greeks_numba.SHARED_CONSTANTS if getattr(greeks_numba, name) != getattr(greeks_numpy, name)
    ]
    if differing:
        raise RuntimeError(f"analytics.greeks_numba disagrees with analytics.greeks_numpy on {differing}")
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
