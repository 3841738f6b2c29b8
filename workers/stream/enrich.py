"""Implied volatility and Greeks for the option ticks of a batch, in one
vectorised call to ``app.greeks`` (Black-Scholes-Merton).

Which underlying price, following app/greeks' docstring (the market's forward
beats spot with a guessed dividend yield), per option, first that applies:
  "future"          the future of the option's own expiry: spot=F, q=r (Black-76)
  "future_rolled"   the nearest future with a known expiry, rolled to the
                    option's expiry: spot=F·e^(-r·(t_future - t_option)), q=r
  "spot"            the index (or equity) LTP with q = OPTION_GREEKS_DIVIDEND_YIELD
  "future_nearest"  the nearest future whose expiry is unknown: spot=F, q=r
Options with none of these get no Greeks (``None`` when published). The
chosen price and source travel with the tick (``underlying_price``,
``underlying_source``).
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import numpy as np

from workers.stream import metrics
from workers.stream.instruments import InstrumentBook

GREEK_NAMES = ("iv", "delta", "gamma", "theta", "vega", "rho")


class UnderlyingPrices:
    """Latest LTP of every underlying instrument seen so far (spot and futures)."""

    def __init__(self) -> None:
        self._by_token: dict[int, float] = {}

    def update(self, tokens: np.ndarray, prices: np.ndarray) -> None:
        # Rows are in arrival order, so later rows overwrite earlier ones.
        self._by_token.update(zip(tokens.tolist(), prices.tolist()))

    def get(self, token: int) -> float | None:
        return self._by_token.get(token)


SOURCE_NAMES = (None, "future", "future_rolled", "spot", "future_nearest")


class GreeksEnricher:
    def __init__(self, interest_rate: float = 0.10, dividend_yield: float = 0.0, now=None) -> None:
        self.interest_rate = interest_rate
        self.dividend_yield = dividend_yield
        self._now = now or (lambda: datetime.now(timezone.utc))
        from app import greeks  # here, so batching works (and tests run) without the Greeks module

        self._greeks = greeks
        self._candidates_of: InstrumentBook | None = None
        self._candidates_cache: dict[tuple, list[tuple]] = {}

    def compute(self, book: InstrumentBook, option_rows: np.ndarray, option_idx: np.ndarray,
                prices: UnderlyingPrices) -> dict[str, np.ndarray]:
        """Greeks for ``option_rows`` (rows of frames.TICK_DTYPE whose
        ``option_idx`` indexes ``book.option_*``): float arrays ``iv, delta,
        gamma, theta, vega, rho, underlying_price`` (NaN where unknown) and
        ``underlying_source``, an index into ``SOURCE_NAMES``."""
        started = time.perf_counter()
        n = len(option_rows)
        now = self._now()
        uid = book.option_underlying[option_idx]
        expiry = book.option_expiry[option_idx]
        t = np.asarray(self._greeks.time_to_expiry(expiry, now), dtype=np.float64).reshape(n)
        # One decision per chain, i.e. (underlying, expiry): hundreds per batch at market scale, so
        # decide per chain and spread the answers over the ticks by index (no mask per chain).
        keys = uid * 1_000_000 + expiry.astype(np.int64)
        _, first_of, chain_of = np.unique(keys, return_index=True, return_inverse=True)
        chains = len(first_of)
        chain_price = np.full(chains, np.nan)
        chain_source = np.zeros(chains, dtype=np.int8)
        chain_q = np.full(chains, float(self.dividend_yield))
        chain_roll = np.full(chains, np.nan)
        future_t: dict = {}  # a future's time to expiry, once per batch
        for c, first in enumerate(first_of.tolist()):
            price, code, rate_as_q, roll_to = self._underlying_for(book, int(uid[first]), expiry[first], prices, now,
                                                                   future_t)
            if code == 0:
                continue
            chain_price[c], chain_source[c] = price, code
            if rate_as_q:
                chain_q[c] = self.interest_rate
            if roll_to is not None:
                chain_roll[c] = roll_to
        chain_of = chain_of.reshape(n)
        spot = chain_price[chain_of]
        roll = chain_roll[chain_of]
        rolled = np.isfinite(roll)
        spot[rolled] *= np.exp(-self.interest_rate * (roll[rolled] - t[rolled]))
        source = chain_source[chain_of]
        q = chain_q[chain_of]
        out = {name: np.full(n, np.nan) for name in GREEK_NAMES}
        out["underlying_price"] = spot
        out["underlying_source"] = source
        price = option_rows["last_price"]
        ok = np.isfinite(spot) & (spot > 0) & (price > 0) & (t > 0)
        if ok.any():
            sel = option_idx[ok]
            result = self._greeks.iv_and_greeks(
                price[ok], spot[ok], book.option_strike[sel], t[ok],
                self.interest_rate, q[ok], book.option_is_call[sel],
            )
            for name in GREEK_NAMES:
                out[name][ok] = result[name]
        metrics.ENRICH_SECONDS.observe(time.perf_counter() - started)
        return out

    def _underlying_for(self, book: InstrumentBook, uid: int, expiry: np.datetime64, prices: UnderlyingPrices,
                        now: datetime, future_t: dict) -> tuple[float, int, bool, float | None]:
        """(price, source code, use q=r, roll from this future's t or None): the first candidate
        (see the module docstring) whose price is known."""
        for token, code, rate_as_q, roll_from in self._candidates(book, uid, expiry):
            price = prices.get(token)
            if price:
                if roll_from is None:
                    return price, code, rate_as_q, None
                t_future = future_t.get(roll_from)
                if t_future is None:
                    t_future = future_t[roll_from] = float(self._greeks.time_to_expiry(roll_from, now))
                return price, code, rate_as_q, t_future
        return math.nan, 0, False, None

    def _candidates(self, book: InstrumentBook, uid: int, expiry: np.datetime64) -> list[tuple]:
        """A chain's underlying prices in order of preference, as (token, source code, q=r, roll
        from this future's expiry or None); worked out once per chain and instrument book."""
        if self._candidates_of is not book:
            self._candidates_of, self._candidates_cache = book, {}
        key = (uid, expiry)
        found = self._candidates_cache.get(key)
        if found is None:
            futures = book.futures.get(uid, [])
            same = [(t, 1, True, None) for e, t in futures if e is not None and np.datetime64(e, "D") == expiry]
            rolled = [(t, 2, True, e) for e, t in futures if e is not None]
            spot_token = book.spot_token.get(uid)
            spot = [(spot_token, 3, False, None)] if spot_token is not None else []
            nearest = [(t, 4, True, None) for _, t in futures]
            found = self._candidates_cache[key] = same + rolled + spot + nearest
        return found
