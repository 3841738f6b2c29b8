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
        spot = np.full(n, np.nan)
        q = np.full(n, float(self.dividend_yield))
        source = np.zeros(n, dtype=np.int8)
        # One decision per (underlying, expiry): a handful per batch.
        keys = uid * 1_000_000 + expiry.astype(np.int64)
        for key in np.unique(keys):
            mask = keys == key
            first = int(np.argmax(mask))
            price, code, rate_as_q, roll_to = self._underlying_for(book, int(uid[first]), expiry[first], prices, now)
            if code == 0:
                continue
            spot[mask] = price if roll_to is None else price * np.exp(-self.interest_rate * (roll_to - t[mask]))
            source[mask] = code
            if rate_as_q:
                q[mask] = self.interest_rate
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
                        now: datetime) -> tuple[float, int, bool, float | None]:
        """(price, source code, use q=r, roll from this future's t or None)."""
        futures = book.futures.get(uid, [])
        for fut_expiry, token in futures:
            if fut_expiry is not None and np.datetime64(fut_expiry, "D") == expiry and prices.get(token):
                return prices.get(token), 1, True, None
        for fut_expiry, token in futures:
            if fut_expiry is not None and prices.get(token):
                t_future = float(self._greeks.time_to_expiry(fut_expiry, now))
                return prices.get(token), 2, True, t_future
        spot_token = book.spot_token.get(uid)
        if spot_token is not None and prices.get(spot_token):
            return prices.get(spot_token), 3, False, None
        for _, token in futures:
            if prices.get(token):
                return prices.get(token), 4, True, None
        return math.nan, 0, False, None
