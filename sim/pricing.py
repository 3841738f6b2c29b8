"""Black–Scholes prices from a volatility smile, vectorised with NumPy.

The smile is quadratic in log-moneyness ln(K/F) with a put skew, so an implied
volatility solver run on the broker's prices recovers `smile_vol` (plus the
small noise the market adds).
"""
from __future__ import annotations

import math

import numpy as np
from numba import vectorize

SKEW = -0.15       # vol points per unit log-moneyness: OTM puts richer than OTM calls
CURVATURE = 1.2    # smile convexity
MIN_TIME = 1e-6    # years; keeps prices finite at expiry


@vectorize(["float64(float64)"], cache=True)
def ndtr(x):
    """Standard normal CDF, elementwise (erfc keeps the far tails accurate)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def smile_vol(atm_vol, strike, forward, years):
    """Implied volatility for each strike; the smile flattens for longer expiries."""
    m = np.log(strike / forward)
    flatten = 1.0 / np.sqrt(np.maximum(years, 1.0 / 365.0) * 52.0)  # 1 at one week
    return np.maximum(atm_vol + (SKEW * m + CURVATURE * m * m) * np.clip(flatten, 0.3, 2.0), 0.01)


def black_scholes(spot, strike, years, rate, vol, is_call, dividend=0.0):
    """European option value; `is_call` is a boolean array."""
    t = np.maximum(years, MIN_TIME)
    sqrt_t = np.sqrt(t)
    d1 = (np.log(spot / strike) + (rate - dividend + 0.5 * vol * vol) * t) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    disc_s = spot * np.exp(-dividend * t)
    disc_k = strike * np.exp(-rate * t)
    # call = S·N(d1) − K·N(d2), put = K·N(−d2) − S·N(−d1): one formula with a sign, so each
    # option costs two N() rather than four (bit-for-bit the same prices: IEEE negation is exact)
    sign = np.where(is_call, 1.0, -1.0)
    return sign * (disc_s * ndtr(sign * d1) - disc_k * ndtr(sign * d2))


def round_to_tick(price, tick, minimum=None):
    rounded = np.round(np.asarray(price) / tick) * tick
    if minimum is not None:
        rounded = np.maximum(rounded, minimum)
    return np.round(rounded, 2)
