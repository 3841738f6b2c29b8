"""The paper broker's margin model: simple, documented, and hedge-aware like SPAN.

Kite publishes no formula, so the sandbox uses one that reproduces the shape of Kite's numbers
(kiteconnect-mocks `basket_margins.json`):

* A leg is a signed quantity of an instrument at a price (a position at its average price, an open
  order at its price, a new order at its price or the touch).
* **Per order** (`/margins/orders`, a basket's `initial`): buying an option blocks its premium
  (`option_premium`); selling an option or trading a future blocks SPAN = the scan range of the
  underlying's notional (NIFTY 6 %, BANKNIFTY 7 %) plus exposure = 2 % of the notional. No credit
  for premium received, no offsets.
* **Portfolio** (a basket's `final`, an account's blocked margin): per underlying, the worst loss of
  all legs together over 17 spot scenarios across ±scan range, each option valued at its payoff
  (intrinsic value), against the legs' prices; plus exposure on short options and futures.
  `option_premium` is the net premium (paid − received, negative for a net credit) and `span`
  what is left, so total = span + exposure + option_premium, as in Kite's basket answer. A hedged
  structure (a spread, an iron condor) has a bounded worst loss, so its `final` is far below
  `initial`; a naked short's `final` is its `initial` less the premium it collects.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .universe import Instrument

SCAN_RANGE = {"NIFTY": 0.06, "BANKNIFTY": 0.07}   # fraction of the underlying's notional
EXPOSURE_RATE = 0.02                              # on short options and futures
SCENARIOS = np.linspace(-1.0, 1.0, 17)            # fractions of the scan range


@dataclass
class Leg:
    instrument: Instrument
    quantity: int        # signed: + bought, - sold
    price: float


@dataclass
class Margin:
    span: float = 0.0
    exposure: float = 0.0
    option_premium: float = 0.0

    @property
    def total(self) -> float:
        return self.span + self.exposure + self.option_premium

    def __add__(self, other: "Margin") -> "Margin":
        return Margin(self.span + other.span, self.exposure + other.exposure,
                      self.option_premium + other.option_premium)


def _is_option(inst: Instrument) -> bool:
    return inst.instrument_type in ("CE", "PE")


def order_margin(leg: Leg, spot: float) -> Margin:
    """One order alone, as Kite's per-order answer: premium for a bought option, else SPAN + exposure."""
    inst = leg.instrument
    if inst.is_index or leg.quantity == 0:
        return Margin()
    if _is_option(inst) and leg.quantity > 0:
        return Margin(option_premium=leg.quantity * leg.price)
    notional = abs(leg.quantity) * spot
    return Margin(span=notional * SCAN_RANGE.get(inst.underlying, 0.10), exposure=notional * EXPOSURE_RATE)


def portfolio_margin(legs: list[Leg], spots: dict[str, float]) -> Margin:
    """All legs together, offsets included (SPAN-like scenarios per underlying, legs × scenarios at once)."""
    total = Margin()
    by_underlying: dict[str, list[Leg]] = {}
    for leg in legs:
        if leg.quantity and not leg.instrument.is_index:
            by_underlying.setdefault(leg.instrument.underlying, []).append(leg)
    for name, group in by_underlying.items():
        spot = spots[name]
        scenarios = spot * (1.0 + SCAN_RANGE.get(name, 0.10) * SCENARIOS)
        kind = np.array([leg.instrument.instrument_type for leg in group])
        strike = np.array([leg.instrument.strike for leg in group])[:, None]
        qty = np.array([leg.quantity for leg in group], dtype=float)
        price = np.array([leg.price for leg in group])
        call, put, option = kind == "CE", kind == "PE", (kind == "CE") | (kind == "PE")
        # Options at their payoff against their prices; futures move with the underlying from the spot.
        value = np.where(call[:, None], np.maximum(scenarios - strike, 0.0),
                         np.where(put[:, None], np.maximum(strike - scenarios, 0.0), scenarios - spot))
        cost = np.where(option, price, 0.0)[:, None]
        pnl = (qty[:, None] * (value - cost)).sum(axis=0)
        premium = float((qty * price)[option].sum())
        exposed = (qty < 0) | ~option
        exposure = float(np.abs(qty[exposed]).sum()) * spot * EXPOSURE_RATE
        worst_loss = max(0.0, float(-pnl.min()))
        total = total + Margin(span=max(0.0, worst_loss - premium), exposure=exposure, option_premium=premium)
    return total


# ---- Kite's answer shapes ------------------------------------------------------------------------
BROKERAGE_PER_ORDER = 20.0
STT_SELL_OPTION = 0.001          # of premium, on the sell side
STT_SELL_FUTURE = 0.0002
EXCHANGE_TURNOVER = 0.0003503    # NSE options, of premium
SEBI_TURNOVER = 10 / 1e7
STAMP_DUTY_BUY = 0.00003
GST = 0.18


def charges(leg: Leg, transaction_type: str) -> dict:
    """Kite's virtual contract note figures for one order (flat ₹20 brokerage, 2026 F&O rates)."""
    turnover = abs(leg.quantity) * leg.price
    option = _is_option(leg.instrument)
    stt = turnover * (STT_SELL_OPTION if option else STT_SELL_FUTURE) if transaction_type == "SELL" else 0.0
    exchange = turnover * EXCHANGE_TURNOVER
    sebi = turnover * SEBI_TURNOVER
    stamp = turnover * STAMP_DUTY_BUY if transaction_type == "BUY" else 0.0
    gst = (BROKERAGE_PER_ORDER + exchange + sebi) * GST
    return {"transaction_tax": stt, "transaction_tax_type": "stt", "exchange_turnover_charge": exchange,
            "sebi_turnover_charge": sebi, "brokerage": BROKERAGE_PER_ORDER, "stamp_duty": stamp,
            "gst": {"igst": gst, "cgst": 0, "sgst": 0, "total": gst},
            "total": stt + exchange + sebi + BROKERAGE_PER_ORDER + stamp + gst}


def zero_charges() -> dict:
    return {"transaction_tax": 0, "transaction_tax_type": "", "exchange_turnover_charge": 0,
            "sebi_turnover_charge": 0, "brokerage": 0, "stamp_duty": 0,
            "gst": {"igst": 0, "cgst": 0, "sgst": 0, "total": 0}, "total": 0}


def margin_object(margin: Margin, inst: Instrument | None = None, order_charges: dict | None = None,
                  compact: bool = False) -> dict:
    """The object Kite answers per order (and for a basket's initial/final)."""
    head = {"type": "equity" if inst else "", "tradingsymbol": inst.tradingsymbol if inst else "",
            "exchange": inst.exchange if inst else ""}
    if compact:
        return {**head, "total": round(margin.total, 2)}
    return {**head, "span": round(margin.span, 2), "exposure": round(margin.exposure, 2),
            "option_premium": round(margin.option_premium, 2), "additional": 0, "bo": 0, "cash": 0, "var": 0,
            "pnl": {"realised": 0, "unrealised": 0}, "leverage": 1 if inst else 0,
            "charges": order_charges or zero_charges(), "total": round(margin.total, 2)}
