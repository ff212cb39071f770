"""Benchmark of analytics.greeks: implied vol plus five Greeks for 100,000 options, on one core.

Prints, from one run: our time (numba kernels, and the numpy fallback), numpy's Black-76 price
alone on the same arrays (the floor), vollib (Jäckel's Let's Be Rational, one option at a time)
on a sample of the same options, the ratios, the accuracy against vollib, and PASS/FAIL against
the targets of issue 12 (<= 250 ns per option, >= 150x vollib per option, IV within 1e-10 of
vollib). A measurement, not a test: exits 0 either way. See bench/README.md.
"""

import argparse
import os
import sys
import time
from pathlib import Path

# One core: set before numpy (and its BLAS) is imported.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[variable] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy.special import ndtr  # noqa: E402

from analytics import greeks  # noqa: E402

TARGET_NS_PER_OPTION = 250.0
TARGET_TIMES_VOLLIB = 150.0
TARGET_IV_ERROR = 1e-10
TARGET_ROUND_TRIP = 1e-9
EXPIRY_DAYS = np.array([1, 2, 3, 7, 14, 21, 28, 56, 91, 182, 273, 365])


def chain_mix(count, seed):
    """NIFTY- and BANKNIFTY-like chains: weekly to yearly expiries, strikes on the exchange grid
    out to the deep wings, a smile with a put skew, calls and puts, premiums from Black-76."""
    rng = np.random.default_rng(seed)
    nifty = rng.random(count) < 0.6
    forward = np.where(nifty, 24_150.0, 51_800.0) * np.exp(rng.normal(0.0, 0.01, count))
    step = np.where(nifty, 50.0, 100.0)
    days = rng.choice(
        EXPIRY_DAYS, count, p=np.linspace(2.0, 0.5, EXPIRY_DAYS.size) / np.linspace(2.0, 0.5, EXPIRY_DAYS.size).sum()
    )
    t = days / 365.0
    # Strikes spread with the expiry's standard deviation (3.5 sd wide), plus 10% far wings.
    spread = 0.16 * np.sqrt(t) * np.where(rng.random(count) < 0.9, 1.2, 4.0)
    strike = np.maximum(np.round(forward * np.exp(rng.normal(0.0, spread, count)) / step) * step, step)
    moneyness = np.log(strike / forward) / np.sqrt(t)
    atm_vol = np.where(nifty, 0.13, 0.16) + 0.04 * np.exp(-days / 10.0)
    vol = np.clip(atm_vol - 0.10 * moneyness + 0.12 * moneyness**2, 0.05, 1.5) * np.exp(rng.normal(0.0, 0.02, count))
    rate = np.full(count, 0.065)
    is_call = rng.random(count) < 0.5
    price = greeks.black76_price(forward, strike, t, vol, rate, is_call)
    return forward, strike, t, vol, rate, is_call, price


def numpy_black76_price(forward, strike, t, vol, rate, is_call):
    """The floor: Black-76 price alone, textbook numpy/scipy, no IV, no Greeks."""
    stdev = vol * np.sqrt(t)
    d1 = np.log(forward / strike) / stdev + 0.5 * stdev
    d2 = d1 - stdev
    sign = np.where(is_call, 1.0, -1.0)
    return np.exp(-rate * t) * sign * (forward * ndtr(sign * d1) - strike * ndtr(sign * d2))


def best_of(repeats, function):
    """Best wall time and best CPU time of this thread over ``repeats`` runs, in seconds."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.thread_time()
        function()
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return min(walls), min(cpus)


def vollib_iv_and_greeks(sample, price, forward, strike, t, rate, is_call):
    from vollib.black.greeks import analytical
    from vollib.black.implied_volatility import implied_volatility

    ivs = np.full(sample.size, np.nan)
    started = time.thread_time()
    for n, i in enumerate(sample):
        flag = "c" if is_call[i] else "p"
        try:
            iv = implied_volatility(price[i], forward[i], strike[i], rate[i], t[i], flag)
        except Exception:  # vollib raises where it finds no vol: counted, not compared
            continue
        ivs[n] = iv
        if iv > 0:
            for greek in (analytical.delta, analytical.gamma, analytical.theta, analytical.vega, analytical.rho):
                greek(flag, forward[i], strike[i], t[i], rate[i], iv)
    return ivs, (time.thread_time() - started) / sample.size


def verdict(ok):
    return "PASS" if ok else "FAIL"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--options", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--vollib-sample", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()

    try:
        from threadpoolctl import threadpool_info

        pools = ", ".join(
            f"{p['internal_api']} {p.get('architecture', '?')} x{p['num_threads']}" for p in threadpool_info()
        )
    except ImportError:
        pools = "threadpoolctl not installed"
    print(f"analytics.greeks backend: {greeks.BACKEND}; thread pools: {pools or 'none'}")
    print(
        f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (other work moves the wall times; CPU times less)"
    )

    forward, strike, t, vol, rate, is_call, price = chain_mix(args.options, args.seed)
    n = price.size
    days = np.round(t * 365).astype(int)
    print(
        f"{n:,} options: expiries {days.min()}-{days.max()} days, |ln(K/F)| up to {np.abs(np.log(strike / forward)).max():.2f}, vols {vol.min():.2f}-{vol.max():.2f}"
    )

    def ours_fused():
        return greeks.implied_vol_and_greeks_black76(price, forward, strike, t, rate, is_call)

    def ours_separate():
        result = greeks.implied_vol_black76(price, forward, strike, t, rate, is_call)
        return result, greeks.black76_greeks(forward, strike, t, result.iv, rate, is_call)

    ours_fused()  # compile (or load the compiled kernels from the cache) and build the guess table
    rows = []
    if greeks.BACKEND == "numba":
        rows.append(("IV + 5 Greeks, one call (numba)", best_of(args.repeats, ours_fused)))
        rows.append(("IV, then 5 Greeks (numba)", best_of(args.repeats, ours_separate)))
        greeks.BACKEND = "numpy"
        rows.append(("IV + 5 Greeks, numpy fallback", best_of(max(3, args.repeats // 5), ours_fused)))
        greeks.BACKEND = "numba"
    else:
        rows.append(("IV + 5 Greeks, numpy (numba unavailable)", best_of(args.repeats, ours_fused)))
    floor = best_of(args.repeats, lambda: numpy_black76_price(forward, strike, t, vol, rate, is_call))

    result, _ = ours_fused()
    rng = np.random.default_rng(args.seed + 1)
    sample = rng.choice(n, size=min(args.vollib_sample, n), replace=False)
    vollib_ivs, vollib_seconds = vollib_iv_and_greeks(sample, price, forward, strike, t, rate, is_call)

    print()
    print(f"{'':42} {'wall ms':>9} {'cpu ms':>9} {'ns/option':>10} {'x floor':>8} {'x vollib':>9}")
    primary_wall, primary_cpu = rows[0][1]
    for label, (wall, cpu) in rows:
        print(
            f"{label:42} {wall * 1e3:9.2f} {cpu * 1e3:9.2f} {cpu / n * 1e9:10.0f} {cpu / floor[1]:8.2f} {vollib_seconds / (cpu / n):9.0f}"
        )
    print(
        f"{'numpy Black-76 price alone (floor)':42} {floor[0] * 1e3:9.2f} {floor[1] * 1e3:9.2f} {floor[1] / n * 1e9:10.0f} {1.0:8.2f}"
    )
    print(
        f"{'vollib IV + 5 Greeks, per option':42} {'':9} {'':9} {vollib_seconds * 1e9:10.0f}   (sample of {sample.size:,})"
    )

    # Accuracy: against vollib where vollib converged and the price pins the vol down to 1e-11,
    # and the price round trip over every solved option.
    ours = result.iv[sample]
    vega = greeks.black76_greeks(forward, strike, t, vol, rate, is_call).vega * 100.0
    determined = (vega * 1e-11 > 4.0 * np.finfo(float).eps * price)[sample]
    converged = np.isfinite(vollib_ivs) & (vollib_ivs > 0)
    compared = converged & determined & (result.reason[sample] == greeks.IV_OK)
    iv_error = np.abs(ours - vollib_ivs)[compared].max() if compared.any() else np.nan
    vollib_zero = np.isfinite(vollib_ivs) & (vollib_ivs == 0)
    solved = result.reason == greeks.IV_OK
    repriced = greeks.black76_price(forward, strike, t, result.iv, rate, is_call)
    round_trip = (np.abs(repriced - price) / price)[solved].max()
    reasons = {greeks.IV_REASONS[code]: int((result.reason == code).sum()) for code in greeks.IV_REASONS}
    print()
    print(
        f"max |IV - vollib IV| over {compared.sum():,} of the sample: {iv_error:.2e}  "
        f"(left out: {int((~converged).sum())} vollib found no vol or 0, {int((converged & ~determined).sum())} where one rounding of the price moves the vol by > 1e-11)"
    )
    print(
        f"  where vollib answers 0 ({int(vollib_zero.sum())}), ours: {sorted({greeks.IV_REASONS[c] for c in result.reason[sample][vollib_zero]})}"
    )
    print(f"max price round-trip error, relative, all {solved.sum():,} solved: {round_trip:.2e}")
    print(f"reasons: {reasons}")

    per_option_ns = primary_cpu / n * 1e9
    per_option_wall_ns = primary_wall / n * 1e9
    times_vollib = vollib_seconds / (primary_cpu / n)
    print()
    print(
        f"{verdict(per_option_ns <= TARGET_NS_PER_OPTION)}  IV + 5 Greeks: {per_option_ns:.0f} ns/option CPU ({per_option_wall_ns:.0f} wall), target <= {TARGET_NS_PER_OPTION:.0f}"
    )
    print(
        f"{verdict(times_vollib >= TARGET_TIMES_VOLLIB)}  {times_vollib:.0f}x vollib per option, target >= {TARGET_TIMES_VOLLIB:.0f}x"
    )
    print(f"{verdict(iv_error <= TARGET_IV_ERROR)}  IV within {iv_error:.1e} of vollib, target {TARGET_IV_ERROR:.0e}")
    print(
        f"{verdict(round_trip <= TARGET_ROUND_TRIP)}  price round trip {round_trip:.1e} relative, target {TARGET_ROUND_TRIP:.0e}"
    )


if __name__ == "__main__":
    main()
