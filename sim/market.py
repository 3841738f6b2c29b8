"""The generated market: a seeded random walk for each underlying, and everything priced off it.

All state lives in NumPy arrays indexed by `Instrument.index`, so one `step()`
reprices every instrument at once; the ticker builds packets from these arrays as it sends.
"""
from __future__ import annotations

import time
from datetime import date

import numpy as np

from . import expiries, fno_universe, liquidity, pricing
from .universe import TICK_SIZE, UNDERLYINGS, Instrument, Underlying, build_universe

KIND_INDEX, KIND_FUTURE, KIND_CALL, KIND_PUT, KIND_EQUITY = 0, 1, 2, 3, 4
UNIVERSES = ("small", "fno")   # small: NIFTY and BANKNIFTY (sim/universe.py); fno: NSE's F&O segment
YEAR_SECONDS = 365.0 * 86400.0
TRADING_YEAR_SECONDS = 252 * 6.25 * 3600.0  # the random walk moves only in trading time
DEPTH_LEVELS = 5


class Market:
    def __init__(self, seed: int = 1, rate: float = 0.10, step_s: float = 0.25,
                 today: date | None = None, strikes_each_side: int = 40, universe: str = "small"):
        if universe not in UNIVERSES:
            raise ValueError(f"unknown universe {universe!r}: one of {', '.join(UNIVERSES)}")
        self.universe = universe
        self.rng = np.random.default_rng(seed)
        self.rate = rate
        self.step_s = step_s
        self.frozen = False
        self.steps = 0
        self.underlyings: tuple[Underlying, ...] = (
            UNDERLYINGS if universe == "small" else fno_universe.load_underlyings(self.rng))
        self.spot = np.array([round(u.spot_base * (1 + self.rng.uniform(-0.02, 0.02)), 2)
                              for u in self.underlyings])
        self.today = today or expiries.today_ist()
        spots = {u.name: float(s) for u, s in zip(self.underlyings, self.spot)}
        self.instruments: list[Instrument] = (
            build_universe(spots, self.today, strikes_each_side) if universe == "small"
            else fno_universe.build_universe(self.underlyings, spots, self.today))
        self.by_token = {i.instrument_token: i for i in self.instruments}
        self.by_key = {i.key: i for i in self.instruments}
        self.spot_instruments = [i for i in self.instruments if i.is_spot]   # each underlying's index or stock
        self._init_arrays()

    # ---- set-up -------------------------------------------------------------------------
    def _init_arrays(self) -> None:
        insts = self.instruments
        n = self.n = len(insts)
        und_index = {u.name: k for k, u in enumerate(self.underlyings)}
        self._und_index = und_index
        kind_of = {"FUT": KIND_FUTURE, "CE": KIND_CALL, "PE": KIND_PUT}
        self.kind = np.array([KIND_INDEX if i.is_index else kind_of.get(i.instrument_type, KIND_EQUITY)
                              for i in insts], dtype=np.int8)
        self.is_index = self.kind == KIND_INDEX
        self.is_spot = self.is_index | (self.kind == KIND_EQUITY)   # priced at the underlying's spot
        self.is_option = (self.kind == KIND_CALL) | (self.kind == KIND_PUT)
        self.und = np.array([und_index[i.underlying] for i in insts], dtype=np.int64)
        self.strike = np.array([i.strike or 1.0 for i in insts])
        epochs = {e: expiries.expiry_close_epoch(e) for e in {i.expiry for i in insts if i.expiry}}
        self.expiry_epoch = np.array([epochs[i.expiry] if i.expiry else 0.0 for i in insts])
        self.tick = np.array([i.tick_size or 0.01 for i in insts])   # indices: 0 in the dump, 0.01 here
        self.lot = np.array([max(i.lot_size, 1) for i in insts], dtype=np.int64)
        self.tokens = np.array([i.instrument_token for i in insts], dtype=np.uint32)
        self.atm_vol = np.array([u.atm_vol for u in self.underlyings])[self.und]
        self.iv_noise = self.rng.normal(0.0, 0.0015, n) * self.is_option

        now = time.time()
        self.ltp = np.zeros(n)
        self._reprice(now)
        self.close = pricing.round_to_tick(self.ltp * (1 + self.rng.normal(0, 0.01, n)), self.tick,
                                           minimum=self.tick)
        self.open = self.ltp.copy()
        self.high = self.ltp.copy()
        self.low = self.ltp.copy()
        tradable = ~self.is_index
        self.volume = (self.lot * self.rng.integers(100, 5000, n)) * tradable
        self.avg_price = self.ltp.copy() * tradable
        self.last_qty = self.lot * tradable
        self.last_trade_time = np.full(n, int(now), dtype=np.int64)
        atm_distance = np.abs(np.log(self.strike / self.spot[self.und]))
        has_oi = ~self.is_spot   # derivatives only (equities have none)
        oi_scale = np.where(self.is_option, np.exp(-atm_distance * 40), 1.0) * has_oi
        self.oi = (self.lot * np.rint(self.rng.uniform(2000, 20000, n) * oi_scale + 10)).astype(np.int64) * has_oi
        self.oi_high = self.oi.copy()
        self.oi_low = self.oi.copy()
        self.oi_open = self.oi.copy()   # fixed: history's open interest is built on it
        self.updated_at = now
        self.liquidity = self._liquidity()
        self._rebuild_depth()
        self.packet_time = int(now)   # exchange_timestamp of the packets built from now on

    def _liquidity(self) -> np.ndarray:
        """Tick-rate weight per instrument (sim/liquidity.py); all 1 in the small universe. Timed from
        today's close, not the wall clock, so a seed always gives the same weights."""
        if self.universe == "small":
            return np.ones(self.n)
        start = expiries.expiry_close_epoch(self.today)
        years = np.maximum((self.expiry_epoch - start) / YEAR_SECONDS, pricing.MIN_TIME)
        forward = self.spot[self.und] * np.exp(self.rate * years)
        index_underlying = np.array([u.is_index for u in self.underlyings])
        return liquidity.weights(self.is_spot, self.kind == KIND_FUTURE, self.is_option, self.und,
                                 index_underlying, self.strike, forward, years, self.atm_vol, self.expiry_epoch)

    # ---- evolution ----------------------------------------------------------------------
    def step(self, now: float | None = None) -> None:
        """Advance the walk by one step and reprice; a frozen market only refreshes timestamps."""
        now = time.time() if now is None else now
        self.updated_at = now
        if not self.frozen:
            self.steps += 1
            dt = self.step_s / TRADING_YEAR_SECONDS
            vols = np.array([u.atm_vol for u in self.underlyings])
            shocks = self.rng.standard_normal(len(vols))
            self.spot = self.spot * np.exp(vols * np.sqrt(dt) * shocks - 0.5 * vols ** 2 * dt)
            self.iv_noise = (0.9 * self.iv_noise + self.rng.normal(0.0, 0.0007, self.n)) * self.is_option
            self._reprice(now)
            self._trade(now)
            self._rebuild_depth()
        self.packet_time = int(now)   # exchange_timestamp of the packets built from now on

    def set_spot(self, name: str, value: float, now: float | None = None) -> None:
        """Jump an underlying (and its chain) to `value`; tests use it to make LIMIT orders cross."""
        k = self._und_index[name]   # KeyError: no such underlying
        self.spot[k] = float(value)
        now = time.time() if now is None else now
        self._reprice(now)
        self.high = np.maximum(self.high, self.ltp)
        self.low = np.minimum(self.low, self.ltp)
        self._rebuild_depth()
        self.packet_time = int(now)   # exchange_timestamp of the packets built from now on

    def _reprice(self, now: float) -> None:
        spot = self.spot[self.und]
        years = np.maximum((self.expiry_epoch - now) / YEAR_SECONDS, pricing.MIN_TIME)
        forward = spot * np.exp(self.rate * years)
        vol = self.implied_vol(now) + self.iv_noise
        option = pricing.black_scholes(spot, self.strike, years, self.rate, vol, self.kind == KIND_CALL)
        value = np.where(self.is_spot, spot, np.where(self.kind == KIND_FUTURE, forward, option))
        self.ltp = pricing.round_to_tick(value, self.tick, minimum=self.tick)
        if hasattr(self, "high"):
            self.high = np.maximum(self.high, self.ltp)
            self.low = np.minimum(self.low, self.ltp)

    def implied_vol(self, now: float | None = None):
        """The smile's volatility per instrument, without noise (what IV solvers should recover)."""
        now = time.time() if now is None else now
        spot = self.spot[self.und]
        years = np.maximum((self.expiry_epoch - now) / YEAR_SECONDS, pricing.MIN_TIME)
        return pricing.smile_vol(self.atm_vol, self.strike, spot * np.exp(self.rate * years), years)

    def _trade(self, now: float) -> None:
        """Random market activity: some instruments trade, open interest drifts."""
        traded = (self.rng.random(self.n) < 0.3) & ~self.is_index
        qty = self.lot * self.rng.integers(1, 20, self.n) * traded
        total = self.volume + qty
        self.avg_price = np.where(traded, (self.avg_price * self.volume + self.ltp * qty) / np.maximum(total, 1),
                                  self.avg_price)
        self.volume = total
        self.last_qty = np.where(traded, qty, self.last_qty)
        self.last_trade_time = np.where(traded, int(now), self.last_trade_time)
        drift = self.lot * self.rng.integers(-5, 6, self.n) * (traded & ~self.is_spot)
        self.oi = np.maximum(self.oi + drift, 0)
        self.oi_high = np.maximum(self.oi_high, self.oi)
        self.oi_low = np.minimum(self.oi_low, self.oi)

    def _rebuild_depth(self) -> None:
        """Five levels a tick apart around the last price; indices have no book."""
        self.book_version = getattr(self, "book_version", -1) + 1   # new liquidity for resting orders
        tick = self.tick[:, None]
        spread = np.where(self.is_option, np.clip(np.rint(self.ltp * 0.002 / TICK_SIZE), 1, 20),
                          np.where(self.kind == KIND_FUTURE, 6, np.where(self.kind == KIND_EQUITY, 2, 0)))
        spread = spread.astype(np.int64)
        below = spread // 2
        bid1 = self.ltp - below * self.tick
        ask1 = self.ltp + (spread - below) * self.tick
        levels = np.arange(DEPTH_LEVELS)[None, :]
        bid_px = np.round(bid1[:, None] - levels * tick, 2)
        ask_px = np.round(ask1[:, None] + levels * tick, 2)
        shape = (self.n, DEPTH_LEVELS)
        live = ~self.is_index[:, None]
        bid_ok = live & (bid_px >= tick - 1e-9)
        self.bid_px = np.where(bid_ok, bid_px, 0.0)
        self.ask_px = np.where(live, ask_px, 0.0)
        if self.universe == "small":   # four int64 draws: the small universe's seeded stream stays as it was
            bid_lots, ask_lots = self.rng.integers(1, 40, shape), self.rng.integers(1, 40, shape)
            bid_orders, ask_orders = self.rng.integers(1, 15, shape), self.rng.integers(1, 15, shape)
        else:   # one int16 draw: a quarter of the time at 100,000 instruments
            bid_lots, ask_lots, bid_orders, ask_orders = self.rng.integers(1, 40, (4, *shape), dtype=np.int16)
            bid_orders, ask_orders = bid_orders % 14 + 1, ask_orders % 14 + 1
        self.bid_qty = self.lot[:, None] * bid_lots * bid_ok
        self.ask_qty = self.lot[:, None] * ask_lots * live
        self.bid_orders = bid_orders * bid_ok
        self.ask_orders = ask_orders * live
        self.total_buy = self.bid_qty.sum(axis=1) * 12
        self.total_sell = self.ask_qty.sum(axis=1) * 12

    # ---- views --------------------------------------------------------------------------
    def touch(self, index: int) -> tuple[float, float]:
        """Best bid and best ask."""
        return float(self.bid_px[index, 0]), float(self.ask_px[index, 0])

    def last_price(self, index: int) -> float:
        return float(self.ltp[index])

    def instrument(self, exchange: str, tradingsymbol: str) -> Instrument | None:
        return self.by_key.get(f"{exchange}:{tradingsymbol}")

    def underlying_spot(self, name: str) -> float:
        return float(self.spot[self._und_index[name]])
