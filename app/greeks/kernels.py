"""Loops over a book: one serial and one prange-threaded build of each.

Arguments are flat contiguous float64 arrays of one length, except r and q,
which are either such arrays or float scalars (the usual case); numba
specialises the loop for each. Results go to rows of one (6, n) array so a
call has few arguments and one allocation. The per-option kernels inline
into the loop bodies, which LLVM vectorises.
"""
from numba import prange, types
from numba.extending import overload

from app.greeks.black import market_terms, option_greeks
from app.greeks.implied import implied_volatility_of
from app.greeks.jit import array_kernel, kernel, prefer_wide_vectors


def at(values, i):
    """values[i] for an array, the value itself for a scalar (broadcast r and q)."""


@overload(at, inline="always")
def _at(values, i):
    if isinstance(values, types.Array):
        return lambda values, i: values[i]
    return lambda values, i: values


def _greeks_loop(spot, strike, t, r, q, sigma, is_call, out):
    for i in prange(spot.shape[0]):
        prefer_wide_vectors()
        rate = at(r, i)
        dividend = at(q, i)
        sign = 1.0 if is_call[i] else -1.0
        sqrt_t, df_rate, df_dividend, x, f_over_k = market_terms(spot[i], strike[i], t[i], rate, dividend)
        price, delta, gamma, theta, vega, rho = option_greeks(
            spot[i], strike[i], t[i], rate, dividend, sigma[i], sign, sqrt_t, df_rate, df_dividend, x, f_over_k)
        out[0, i] = price
        out[1, i] = delta
        out[2, i] = gamma
        out[3, i] = theta
        out[4, i] = vega
        out[5, i] = rho


def _implied_volatility_loop(price, spot, strike, t, r, q, is_call, out):
    for i in prange(spot.shape[0]):
        prefer_wide_vectors()
        sign = 1.0 if is_call[i] else -1.0
        sqrt_t, df_rate, _, x, f_over_k = market_terms(spot[i], strike[i], t[i], at(r, i), at(q, i))
        out[i] = implied_volatility_of(price[i], spot[i], strike[i], t[i], sign, sqrt_t, df_rate, x, f_over_k)


def _iv_and_greeks_loop(price, spot, strike, t, r, q, is_call, out):
    for i in prange(spot.shape[0]):
        prefer_wide_vectors()
        rate = at(r, i)
        dividend = at(q, i)
        sign = 1.0 if is_call[i] else -1.0
        sqrt_t, df_rate, df_dividend, x, f_over_k = market_terms(spot[i], strike[i], t[i], rate, dividend)
        sigma = implied_volatility_of(price[i], spot[i], strike[i], t[i], sign, sqrt_t, df_rate, x, f_over_k)
        _, delta, gamma, theta, vega, rho = option_greeks(
            spot[i], strike[i], t[i], rate, dividend, sigma, sign, sqrt_t, df_rate, df_dividend, x, f_over_k)
        out[0, i] = sigma
        out[1, i] = delta
        out[2, i] = gamma
        out[3, i] = theta
        out[4, i] = vega
        out[5, i] = rho


@kernel
def iv_and_greeks_one(price, spot, strike, t, r, q, is_call):
    """Scalar entry point: skips the array set-up that dominates a single-option call."""
    sign = 1.0 if is_call else -1.0
    sqrt_t, df_rate, df_dividend, x, f_over_k = market_terms(spot, strike, t, r, q)
    sigma = implied_volatility_of(price, spot, strike, t, sign, sqrt_t, df_rate, x, f_over_k)
    _, delta, gamma, theta, vega, rho = option_greeks(
        spot, strike, t, r, q, sigma, sign, sqrt_t, df_rate, df_dividend, x, f_over_k)
    return sigma, delta, gamma, theta, vega, rho


@kernel
def greeks_one(spot, strike, t, r, q, sigma, is_call):
    sign = 1.0 if is_call else -1.0
    sqrt_t, df_rate, df_dividend, x, f_over_k = market_terms(spot, strike, t, r, q)
    return option_greeks(spot, strike, t, r, q, sigma, sign, sqrt_t, df_rate, df_dividend, x, f_over_k)


greeks_serial = array_kernel(_greeks_loop, parallel=False)
greeks_parallel = array_kernel(_greeks_loop, parallel=True)
implied_volatility_serial = array_kernel(_implied_volatility_loop, parallel=False)
implied_volatility_parallel = array_kernel(_implied_volatility_loop, parallel=True)
iv_and_greeks_serial = array_kernel(_iv_and_greeks_loop, parallel=False)
iv_and_greeks_parallel = array_kernel(_iv_and_greeks_loop, parallel=True)
