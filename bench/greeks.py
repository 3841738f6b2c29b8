"""Throughput and latency of app.greeks, against a vectorised NumPy/SciPy baseline.

    .venv/bin/python bench/greeks.py [--quick]

Prints options/s for books of 10k, 100k and 1M options on 1 and 2 threads
(Greeks alone, and implied volatility + Greeks in one pass), chain latencies,
the first-call compile time (fresh process, empty numba cache) and the
baseline measured in the same run. Figures are medians of several repeats.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from scipy.special import ndtr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import greeks  # noqa: E402

RATE = 0.10


def random_book(n, seed=7):
    """Strikes 0.7-1.3 x spot, expiries one day to a year, vols 5-80 %, half calls."""
    rng = np.random.default_rng(seed)
    spot = np.exp(rng.uniform(np.log(50.0), np.log(60000.0), n))
    strike = spot * rng.uniform(0.7, 1.3, n)
    t = rng.integers(1, 366, n) / 365.0
    sigma = rng.uniform(0.05, 0.80, n)
    is_call = rng.random(n) < 0.5
    price = greeks.greeks(spot, strike, t, RATE, 0.0, sigma, is_call)["price"]
    return dict(price=price, spot=spot, strike=strike, t=t, sigma=sigma, is_call=is_call)


def median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


# --- the baseline: what a careful NumPy/SciPy implementation does ---------------------------

def baseline_greeks(spot, strike, t, r, q, sigma, is_call):
    sign = np.where(is_call, 1.0, -1.0)
    sqrt_t = np.sqrt(t)
    total_vol = sigma * sqrt_t
    d1 = (np.log(spot / strike) + (r - q + 0.5 * sigma * sigma) * t) / total_vol
    d2 = d1 - total_vol
    df_r, df_q = np.exp(-r * t), np.exp(-q * t)
    pdf1 = np.exp(-0.5 * d1 * d1) / np.sqrt(2.0 * np.pi)
    cdf1, cdf2 = ndtr(sign * d1), ndtr(sign * d2)
    spot_leg, strike_leg = spot * df_q * cdf1, strike * df_r * cdf2
    vega = spot * df_q * pdf1 * sqrt_t
    return {
        "price": sign * (spot_leg - strike_leg),
        "delta": sign * df_q * cdf1,
        "gamma": df_q * pdf1 / (spot * total_vol),
        "theta": (-0.5 * vega * sigma / t + sign * (q * spot_leg - r * strike_leg)) / 365.0,
        "vega": vega / 100.0,
        "rho": sign * t * strike_leg / 100.0,
    }


def baseline_iv_and_greeks(price, spot, strike, t, r, q, is_call):
    """Newton from the Brenner–Subrahmanyam guess, bisection-safeguarded, iterated
    on the still-unconverged options until |step| < 1e-12 (or 100 iterations)."""
    low, high = np.full(price.shape, 1e-4), np.full(price.shape, 5.0)
    sigma = np.clip(np.sqrt(2.0 * np.pi / t) * price / spot, 0.01, 2.0)
    active = np.arange(price.size)
    for _ in range(100):
        g = baseline_greeks(spot[active], strike[active], t[active], r, q, sigma[active], is_call[active])
        diff = g["price"] - price[active]
        high[active] = np.where(diff > 0, sigma[active], high[active])
        low[active] = np.where(diff <= 0, sigma[active], low[active])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):   # zero vega: bisect instead
            step = diff / (100.0 * g["vega"])
        proposal = sigma[active] - step
        bad = ~((proposal > low[active]) & (proposal < high[active]))
        proposal = np.where(bad, 0.5 * (low[active] + high[active]), proposal)
        done = np.abs(proposal - sigma[active]) < 1e-12
        sigma[active] = proposal
        active = active[~done]
        if active.size == 0:
            break
    result = baseline_greeks(spot, strike, t, r, q, sigma, is_call)
    result["iv"] = sigma
    return result


# --- measurements ------------------------------------------------------------------------------

def book_throughput(sizes, repeats):
    rows = []
    for n in sizes:
        book = random_book(n)
        args = (book["spot"], book["strike"], book["t"], RATE, 0.0)
        greeks_only = lambda: greeks.greeks(*args, book["sigma"], book["is_call"])  # noqa: E731
        with_iv = lambda: greeks.iv_and_greeks(book["price"], *args, book["is_call"])  # noqa: E731
        for threads in (1, 2):
            numba.set_num_threads(threads)
            greeks_only(), with_iv()
            rows.append((n, threads, n / median_seconds(greeks_only, repeats), n / median_seconds(with_iv, repeats)))
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return rows


def baseline_throughput(n, repeats):
    book = random_book(n)
    args = (book["spot"], book["strike"], book["t"], RATE, 0.0)
    greeks_rate = n / median_seconds(lambda: baseline_greeks(*args, book["sigma"], book["is_call"]), repeats)
    iv_rate = n / median_seconds(lambda: baseline_iv_and_greeks(book["price"], *args, book["is_call"]), repeats)
    mine = greeks.iv_and_greeks(book["price"], *args, book["is_call"])["iv"]
    theirs = baseline_iv_and_greeks(book["price"], *args, book["is_call"])["iv"]
    liquid = book["price"] - np.maximum(np.where(book["is_call"], 1, -1) * (
        book["spot"] - book["strike"] * np.exp(-RATE * book["t"])), 0) >= 0.05
    errors = (np.nanmax(np.abs(mine[liquid] - book["sigma"][liquid])),
              np.nanmax(np.abs(theirs[liquid] - book["sigma"][liquid])))
    return greeks_rate, iv_rate, errors


def chain_latency(size, repeats=2000):
    book = random_book(max(size, 1))
    spot = float(book["spot"][0])
    strike = spot * np.linspace(0.8, 1.2, size)
    t = 7.0 / 365.0
    is_call = np.arange(size) % 2 == 0
    price = greeks.greeks(spot, strike, t, RATE, 0.0, 0.15, is_call)["price"]
    call = lambda: greeks.iv_and_greeks(price, spot, strike, t, RATE, 0.0, is_call)  # noqa: E731
    call()
    return median_seconds(lambda: [call() for _ in range(20)], max(repeats // 20, 5)) / 20


def single_option_latency(repeats=200):
    call = lambda: greeks.iv_and_greeks(1.25, 24000.0, 24100.0, 7.0 / 365.0, RATE, 0.0, True)  # noqa: E731
    call()
    return median_seconds(lambda: [call() for _ in range(100)], repeats) / 100


COMPILE_SCRIPT = """
import time
started = time.perf_counter()
from app import greeks
imported = time.perf_counter()
greeks.iv_and_greeks([1.0, 2.0], 100.0, [100.0, 105.0], 0.1, 0.1, 0.0, [True, False])
first = time.perf_counter()
greeks.warm_up()
print(imported - started, first - imported, time.perf_counter() - first)
"""


def compile_times():
    """(import, first iv_and_greeks call, rest of warm_up) in a fresh process: empty cache, then cached."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(root))
        runs = [subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, cwd=root, check=True,
                               capture_output=True, text=True).stdout.split() for _ in range(2)]
    return [[float(x) for x in run] for run in runs]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 1M book")
    options = parser.parse_args()
    repeats = 3 if options.quick else 9
    sizes = (10_000, 100_000) if options.quick else (10_000, 100_000, 1_000_000)

    greeks.warm_up()
    print(f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads available, "
          f"threading layer after warm-up: {numba.threading_layer()}")
    print("\nBooks (options/s, median of %d):" % repeats)
    print(f"{'options':>9} {'threads':>7} {'greeks':>14} {'iv+greeks':>14}")
    rows = book_throughput(sizes, repeats)
    for n, threads, greeks_rate, iv_rate in rows:
        print(f"{n:>9,} {threads:>7} {greeks_rate / 1e6:>11.1f} M/s {iv_rate / 1e6:>11.2f} M/s")

    base_n = 100_000
    base_greeks, base_iv, (my_error, base_error) = baseline_throughput(base_n, max(3, repeats // 3))
    print(f"\nNumPy/SciPy baseline ({base_n:,} options, 1 thread): greeks {base_greeks / 1e6:.2f} M/s, "
          f"iv+greeks {base_iv / 1e6:.3f} M/s")
    print(f"  max |iv - true| where time value >= 0.05: app.greeks {my_error:.1e}, baseline {base_error:.1e}")
    best = {label: max(r[index] for r in rows if r[0] == base_n and r[1] == 2) for label, index in
            (("greeks", 2), ("iv", 3))}
    one = {label: max(r[index] for r in rows if r[0] == base_n and r[1] == 1) for label, index in
           (("greeks", 2), ("iv", 3))}
    print(f"  ratio app.greeks / baseline at {base_n:,}: greeks x{best['greeks'] / base_greeks:.0f} (2 threads), "
          f"x{one['greeks'] / base_greeks:.0f} (1 thread); iv+greeks x{best['iv'] / base_iv:.0f} (2 threads), "
          f"x{one['iv'] / base_iv:.0f} (1 thread)")

    print("\nLatency of iv_and_greeks (median):")
    print(f"  single option (scalars): {single_option_latency() * 1e6:8.2f} us")
    for size in (1, 100, 1000):
        print(f"  chain of {size:>5} options:   {chain_latency(size) * 1e6:8.2f} us")

    print("\nCompile (fresh process; import / first iv_and_greeks call / rest of warm_up), seconds:")
    (cold, warm) = compile_times()
    print(f"  empty numba cache: {cold[0]:.2f} / {cold[1]:.2f} / {cold[2]:.2f}")
    print(f"  cached:            {warm[0]:.2f} / {warm[1]:.2f} / {warm[2]:.2f}")


if __name__ == "__main__":
    main()
