"""How often each instrument ticks: a liquidity weight per instrument, mean 1 over the universe.

The ticker sends instrument i at `tick_rate × w_i`, so `--tick-rate R` stays R ticks/s per
subscribed instrument on average while liquid contracts tick more than illiquid ones, as on NSE:
spots and near futures most, options by moneyness (e^(−z), z = |ln K/F| / (σ√T), the distance
from the money in standard deviations, with a floor) and less for each later expiry; index
options more than stock options. Fixed at start-up from the opening prices.
"""
from __future__ import annotations

import numpy as np

# Raw weights: an at-the-money option of a stock's near month is 1.
SPOT_WEIGHT = 1.0
FUTURE_WEIGHTS = (1.0, 0.3, 0.1)   # nearest expiry first
LATER_EXPIRY_FACTOR = 0.5          # each later option expiry ticks half as often
INDEX_OPTION_FACTOR = 1.5
FLOOR = 0.04                       # far strikes and far expiries still tick now and then
MIN_YEARS = 1.0 / 365.0


def expiry_rank(und: np.ndarray, expiry_epoch: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """0 for an underlying's nearest expiry among `rows`, 1 for the next, … (0 outside `rows`)."""
    rank = np.zeros(len(und), np.int64)
    if not rows.any():
        return rank
    pairs, inverse = np.unique(np.stack([und[rows], expiry_epoch[rows]], 1), axis=0, return_inverse=True)
    first = np.searchsorted(pairs[:, 0], pairs[:, 0], side="left")   # pairs are sorted by underlying
    rank[rows] = (np.arange(len(pairs)) - first)[inverse.ravel()]
    return rank


def weights(is_spot, is_future, is_option, und, index_underlying, strike, forward, years, vol,
            expiry_epoch) -> np.ndarray:
    """Per-instrument weights, normalised to mean 1."""
    z = np.abs(np.log(strike / forward)) / (vol * np.sqrt(np.maximum(years, MIN_YEARS)))
    option_rank = expiry_rank(und, expiry_epoch, is_option)
    option = np.maximum(np.exp(-z) * LATER_EXPIRY_FACTOR ** option_rank
                        * np.where(index_underlying[und], INDEX_OPTION_FACTOR, 1.0), FLOOR)
    future_rank = np.minimum(expiry_rank(und, expiry_epoch, is_future), len(FUTURE_WEIGHTS) - 1)
    future = np.array(FUTURE_WEIGHTS)[future_rank]
    raw = np.where(is_spot, SPOT_WEIGHT, np.where(is_future, future, np.where(is_option, option, 1.0)))
    return raw / raw.mean()
