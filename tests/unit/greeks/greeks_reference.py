"""Independent references for app.greeks: QuantLib's analytic engine and mpmath at 50 digits."""
import math

import mpmath as mp
import numpy as np
import QuantLib as ql

DAYS_PER_YEAR = 365


def quantlib_greeks(spot, strike, days, r, q, sigma, is_call):
    """QuantLib AnalyticEuropeanEngine, converted to app.greeks units, for whole-day expiries
    (ACT/365 Fixed, continuous compounding; t = days / 365)."""
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    names = ("price", "delta", "gamma", "theta", "vega", "rho")
    out = {name: np.empty(len(spot)) for name in names}
    for i in range(len(spot)):
        rate = ql.YieldTermStructureHandle(ql.FlatForward(today, float(r[i]), day_count, ql.Continuous, ql.Annual))
        dividend = ql.YieldTermStructureHandle(ql.FlatForward(today, float(q[i]), day_count, ql.Continuous, ql.Annual))
        vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), float(sigma[i]), day_count))
        process = ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(float(spot[i]))), dividend, rate, vol)
        kind = ql.Option.Call if is_call[i] else ql.Option.Put
        option = ql.EuropeanOption(ql.PlainVanillaPayoff(kind, float(strike[i])),
                                   ql.EuropeanExercise(today + int(days[i])))
        option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        out["price"][i] = option.NPV()
        out["delta"][i] = option.delta()
        out["gamma"][i] = option.gamma()
        out["theta"][i] = option.theta() / DAYS_PER_YEAR   # QuantLib: per year
        out["vega"][i] = option.vega() / 100.0             # QuantLib: per 1.0 of volatility
        out["rho"][i] = option.rho() / 100.0               # QuantLib: per 1.0 of rate
    return out


def exact_price_and_time_value(spot, strike, t, r, q, sigma, is_call):
    """(price, time value) at 50 digits, the double inputs taken as exact."""
    with mp.workdps(50):
        s, k, t, r, q, v = (mp.mpf(float(x)) for x in (spot, strike, t, r, q, sigma))
        forward_spot = s * mp.exp(-q * t)
        discounted_strike = k * mp.exp(-r * t)
        d1 = (mp.log(s / k) + (r - q + v * v / 2) * t) / (v * mp.sqrt(t))
        d2 = d1 - v * mp.sqrt(t)
        if is_call:
            price = forward_spot * mp.ncdf(d1) - discounted_strike * mp.ncdf(d2)
            intrinsic = max(forward_spot - discounted_strike, 0)
        else:
            price = discounted_strike * mp.ncdf(-d2) - forward_spot * mp.ncdf(-d1)
            intrinsic = max(discounted_strike - forward_spot, 0)
        return float(price), float(price - intrinsic)


def exact_vega(spot, strike, t, r, q, sigma):
    """d price / d sigma (per 1.0 of volatility), same for calls and puts."""
    with mp.workdps(30):
        s, k, t, r, q, v = (mp.mpf(float(x)) for x in (spot, strike, t, r, q, sigma))
        d1 = (mp.log(s / k) + (r - q + v * v / 2) * t) / (v * mp.sqrt(t))
        return float(s * mp.exp(-q * t) * mp.npdf(d1) * mp.sqrt(t))


def ulp(x):
    return math.ulp(abs(x))
