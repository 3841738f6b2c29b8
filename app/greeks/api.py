"""Array-in, array-out entry points: broadcasting, serial/threaded dispatch, result dicts."""
import math

import numpy as np

from app.greeks import kernels

GREEK_NAMES = ("delta", "gamma", "theta", "vega", "rho")
# Below these book sizes waking numba's threads (a few us) costs more than the
# second core saves; measured on 2 cores: Greeks alone break even near 512
# options, implied volatility + Greeks near 100.
PARALLEL_MIN_GREEKS = 1024
PARALLEL_MIN_IMPLIED = 256

_SCALAR_TYPES = (float, int, np.floating, np.integer, np.bool_)


def _all_scalars(values):
    return all(isinstance(v, _SCALAR_TYPES) for v in values)


def _book(values, rate, dividend, is_call):
    """Broadcast the inputs to one shape; flat contiguous float64 arrays for the
    kernels, with r and q left as floats when both are scalars."""
    arrays = [np.asarray(v, dtype=np.float64) for v in values]
    flags = np.asarray(is_call, dtype=np.bool_)
    rate = np.asarray(rate, dtype=np.float64)
    dividend = np.asarray(dividend, dtype=np.float64)
    everything = arrays + [flags, rate, dividend]
    shapes = {a.shape for a in everything if a.ndim}
    # np.broadcast_shapes/broadcast_to cost microseconds: skip them in the usual
    # case of equal-shaped arrays mixed with scalars.
    shape = shapes.pop() if len(shapes) == 1 else np.broadcast_shapes(*(a.shape for a in everything))
    size = math.prod(shape)

    def flat(a):
        if a.shape == shape:
            return np.ascontiguousarray(a).reshape(-1)
        if a.ndim == 0:
            return np.full(size, a, dtype=a.dtype)
        return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1)

    if rate.ndim == 0 and dividend.ndim == 0:
        rate, dividend = float(rate), float(dividend)
    else:
        rate, dividend = flat(rate), flat(dividend)
    return [flat(a) for a in arrays], rate, dividend, flat(flags), shape


def _as_dict(names, rows, shape):
    if len(shape) != 1:
        rows = rows.reshape((len(names),) + shape)
    return {name: row[()] for name, row in zip(names, rows)}   # [()] turns 0-d rows into NumPy scalars


def greeks(spot, strike, t, r, q, sigma, is_call):
    """Black–Scholes–Merton value and Greeks of European options, elementwise.

    Every argument is a scalar or an array; they broadcast together. `t` in
    years (ACT/365, see time_to_expiry), `r` and `q` continuous annual rates,
    `sigma` annual volatility, `is_call` True for calls, False for puts.

    Returns a dict of arrays (NumPy scalars for all-scalar input):
      price  premium, in the currency of spot and strike
      delta  d price / d spot
      gamma  d delta / d spot
      theta  price change per calendar day (annual theta / 365)
      vega   price change per volatility point (sigma + 0.01)
      rho    price change per percentage point of r (r + 0.01)
    NaN where t <= 0 or sigma <= 0.
    """
    if _all_scalars((spot, strike, t, r, q, sigma, is_call)):
        values = kernels.greeks_one(float(spot), float(strike), float(t), float(r), float(q), float(sigma),
                                    bool(is_call))
        return {name: np.float64(v) for name, v in zip(("price",) + GREEK_NAMES, values)}
    (spot, strike, t, sigma), r, q, is_call, shape = _book((spot, strike, t, sigma), r, q, is_call)
    out = np.empty((6, spot.shape[0]))
    loop = kernels.greeks_parallel if spot.shape[0] >= PARALLEL_MIN_GREEKS else kernels.greeks_serial
    loop(spot, strike, t, r, q, sigma, is_call, out)
    return _as_dict(("price",) + GREEK_NAMES, out, shape)


def implied_volatility(price, spot, strike, t, r, q, is_call):
    """Black–Scholes–Merton implied volatility of European option prices, elementwise.

    Arguments broadcast as in `greeks`. Returns annual volatilities, NaN
    (never an exception) where no volatility reproduces the price: a price at
    or below the discounted intrinsic value e^-rt·max(±(F - K), 0), at or above
    the no-arbitrage bound (spot·e^-qt for calls, strike·e^-rt for puts),
    t <= 0, non-positive or non-finite inputs, or (in the money) a time value
    within ~32 epsilons of the price and intrinsic value it is the difference
    of, i.e. rounding noise with no volatility information left.
    """
    if _all_scalars((price, spot, strike, t, r, q, is_call)):
        return np.float64(kernels.iv_and_greeks_one(float(price), float(spot), float(strike), float(t), float(r),
                                                    float(q), bool(is_call))[0])
    (price, spot, strike, t), r, q, is_call, shape = _book((price, spot, strike, t), r, q, is_call)
    out = np.empty(spot.shape[0])
    loop = (kernels.implied_volatility_parallel if spot.shape[0] >= PARALLEL_MIN_IMPLIED
            else kernels.implied_volatility_serial)
    loop(price, spot, strike, t, r, q, is_call, out)
    return out.reshape(shape)[()]   # [()] turns a 0-d result into a NumPy scalar


def iv_and_greeks(price, spot, strike, t, r, q, is_call):
    """Implied volatility and the Greeks at it, in one pass over the book.

    Returns a dict with `iv` (as implied_volatility) and `delta`, `gamma`,
    `theta`, `vega`, `rho` (units as in greeks); all NaN where `iv` is NaN.
    """
    if _all_scalars((price, spot, strike, t, r, q, is_call)):
        values = kernels.iv_and_greeks_one(float(price), float(spot), float(strike), float(t), float(r), float(q),
                                           bool(is_call))
        return {name: np.float64(v) for name, v in zip(("iv",) + GREEK_NAMES, values)}
    (price, spot, strike, t), r, q, is_call, shape = _book((price, spot, strike, t), r, q, is_call)
    out = np.empty((6, spot.shape[0]))
    loop = kernels.iv_and_greeks_parallel if spot.shape[0] >= PARALLEL_MIN_IMPLIED else kernels.iv_and_greeks_serial
    loop(price, spot, strike, t, r, q, is_call, out)
    return _as_dict(("iv",) + GREEK_NAMES, out, shape)


def warm_up():
    """Compile (or load from numba's cache) every kernel build the service uses:
    serial and threaded, scalar and per-option r/q, calls and puts, and the
    single-option path, so the first tick never waits for the compiler."""
    for size in (2, max(PARALLEL_MIN_GREEKS, PARALLEL_MIN_IMPLIED)):
        is_call = np.arange(size) % 2 == 0
        spot = np.full(size, 100.0)
        strike = np.linspace(80.0, 120.0, size)
        t = np.full(size, 0.25)
        for r, q in ((0.1, 0.0), (np.full(size, 0.1), np.zeros(size))):
            price = greeks(spot, strike, t, r, q, 0.2, is_call)["price"]
            implied_volatility(price, spot, strike, t, r, q, is_call)
            iv_and_greeks(price, spot, strike, t, r, q, is_call)
    greeks(100.0, 100.0, 0.25, 0.1, 0.0, 0.2, True)
    iv_and_greeks(5.0, 100.0, 100.0, 0.25, 0.1, 0.0, False)
