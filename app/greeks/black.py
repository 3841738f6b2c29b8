"""Black–Scholes–Merton value and Greeks of one European option (scalar kernels).

`market_terms` turns (spot, strike, t, r, q) into the quantities every other
kernel shares, so the implied-volatility pass reuses them for the Greeks.
Both normal CDFs come from a single exp: exp(-d2²/2) = exp(-d1²/2) * F/K.
"""
import math

import numpy as np

from app.greeks.fastmath import INV_SQRT2, INV_SQRT_2PI, erfcx, exp, log
from app.greeks.jit import kernel

DAYS_PER_YEAR = 365.0
PER_POINT = 0.01   # one volatility point / one percentage point of rate


@kernel
def market_terms(spot, strike, t, r, q):
    """(sqrt(t), e^-rt, e^-qt, ln(F/K), F/K) with F = spot * e^((r-q)t)."""
    df_rate = exp(-r * t)
    df_dividend = exp(-q * t)
    forward_over_strike = spot * df_dividend / (strike * df_rate)
    return np.sqrt(t), df_rate, df_dividend, log(forward_over_strike), forward_over_strike


@kernel
def cdf_pair(d1, d2, forward_over_strike, sign):
    """(N(sign*d1), N(sign*d2), n(d1)): each tail from erfcx so deep tails keep full relative precision."""
    gauss1 = exp(-0.5 * d1 * d1)
    gauss2 = gauss1 * forward_over_strike
    tail1 = 0.5 * erfcx(abs(d1) * INV_SQRT2) * gauss1
    tail2 = 0.5 * erfcx(abs(d2) * INV_SQRT2) * gauss2
    cdf1 = tail1 if sign * d1 < 0.0 else 1.0 - tail1
    cdf2 = tail2 if sign * d2 < 0.0 else 1.0 - tail2
    return cdf1, cdf2, INV_SQRT_2PI * gauss1


@kernel
def option_greeks(spot, strike, t, r, q, sigma, sign, sqrt_t, df_rate, df_dividend, log_moneyness,
                  forward_over_strike):
    """(price, delta, gamma, theta/day, vega/vol point, rho/rate point); sign = +1 call, -1 put.

    NaN where t <= 0 or sigma <= 0: an expired or volatility-free option has no Greeks.
    """
    total_vol = sigma * sqrt_t
    d1 = log_moneyness / total_vol + 0.5 * total_vol
    d2 = d1 - total_vol
    cdf1, cdf2, pdf1 = cdf_pair(d1, d2, forward_over_strike, sign)
    discounted_spot = spot * df_dividend
    discounted_strike = strike * df_rate
    spot_leg = discounted_spot * cdf1
    strike_leg = discounted_strike * cdf2
    price = sign * (spot_leg - strike_leg)
    delta = sign * df_dividend * cdf1
    gamma = df_dividend * pdf1 / (spot * total_vol)
    vega = discounted_spot * pdf1 * sqrt_t
    theta = -0.5 * vega * sigma / t + sign * (q * spot_leg - r * strike_leg)
    rho = sign * t * strike_leg
    valid = (t > 0.0) & (sigma > 0.0)
    nan = math.nan
    return (price if valid else nan,
            delta if valid else nan,
            gamma if valid else nan,
            theta / DAYS_PER_YEAR if valid else nan,
            vega * PER_POINT if valid else nan,
            rho * PER_POINT if valid else nan)
