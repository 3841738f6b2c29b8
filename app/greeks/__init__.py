"""Implied volatility and Greeks for whole option books, compiled with numba.

    from app import greeks
    greeks.warm_up()                                   # once, at worker start
    t = greeks.time_to_expiry(expiry_dates, now)       # years to 15:30 IST
    g = greeks.iv_and_greeks(ltp, underlying, strike, t, greeks.default_rate(),
                             greeks.default_dividend_yield(), is_call)

Model: Black–Scholes–Merton for European options; `t` in years (ACT/365),
continuous `r` and `q`. Units: delta and gamma per unit of spot, theta per
calendar day, vega per volatility point, rho per percentage point of rate.

Which underlying to pass. NSE index and stock options are European and
settle on the underlying at expiry, so the model only needs the forward to
expiry F = S·e^((r-q)t). The index pays dividends in lumps nobody knows
exactly, so a guessed continuous q (and even r) misplaces the forward, and
calls and puts of one strike then show different implied vols. The market's
own forward is better:
  * recommended: the forward of the option's expiry — the future of the same
    expiry (monthly) or, for weeklies, the put–call-parity forward
    F = K + e^(rt)·(C − P) at the ATM strike (or the near future rolled by
    e^(r·Δt)) — passed as `spot=F` with `q=r`. That makes the model's forward
    exactly F (Black-76) while still discounting at r; rho is then the
    derivative holding spot and q fixed, as everywhere else here.
  * otherwise spot with `q` = `OPTION_GREEKS_DIVIDEND_YIELD` (default 0, as the
    old service did): right only as far as that q is right.

Speed: the maths (exp, log, erfcx, inverse normal) is written as branch-free
polynomials, the implied-volatility solver is Jäckel's "Let's be rational"
with a fixed two Householder steps, so LLVM vectorises the loop over the
book; books of PARALLEL_MIN_* options and more are split over all cores with
prange, smaller ones run on the calling thread (starting threads costs more).
bench/greeks.py prints the throughput.
"""
from app.greeks.api import (
    PARALLEL_MIN_GREEKS,
    PARALLEL_MIN_IMPLIED,
    greeks,
    implied_volatility,
    iv_and_greeks,
    warm_up,
)
from app.greeks.defaults import default_dividend_yield, default_rate
from app.greeks.expiry import time_to_expiry

__all__ = [
    "PARALLEL_MIN_GREEKS",
    "PARALLEL_MIN_IMPLIED",
    "default_dividend_yield",
    "default_rate",
    "greeks",
    "implied_volatility",
    "iv_and_greeks",
    "time_to_expiry",
    "warm_up",
]
