"""`--universe fno`: NSE's F&O segment — every index and stock underlying with its spot, futures and chains.

The underlyings and their starting prices come from `sim/data/fno_underlyings.csv`; everything else
follows NSE's 2026 contract rules, approximated:

- Spot: an index (segment INDICES, token byte 9, its real Kite token) or the stock on NSE
  (segment NSE, instrument_type EQ, token byte 1, `name` = the symbol).
- Futures: the next three monthly expiries (last Tuesday of the month).
- Options: NIFTY has weekly options (the next four Tuesdays) plus the next three monthlies; the
  other indices and every stock have the next three monthlies only. Strikes sit around the
  at-the-money strike of the starting spot; near expiries list more of them.
- Stock lot size: about ₹7.5 lakh of contract value (NSE keeps stock lots at ₹5–10 lakh; the
  ₹15 lakh minimum is for index derivatives), rounded to 25 shares (5 below 100, 1 below 10).
- Stock strike step by price band (₹1 below ₹100 … ₹500 above ₹20,000); tick size 0.05 for
  every future and option, NSE's equity price bands for the stock itself (₹0.01 below ₹250 …).
Tokens are `exchange_token << 8 | segment`: NFO exchange tokens count up from 35001 in file order.
"""
from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from . import expiries
from .universe import SEGMENT_NFO, TICK_SIZE, Instrument, Underlying

DATA_FILE = Path(__file__).parent / "data" / "fno_underlyings.csv"
SEGMENT_NSE = 1
FIRST_NFO_EXCHANGE_TOKEN = 35001
FIRST_STOCK_EXCHANGE_TOKEN = 2001
FUTURE_MONTHS = 3
OPTION_MONTHS = 3
NIFTY_WEEKLIES = 4
INDEX_STRIKES_EACH_SIDE = 100
STOCK_STRIKES_EACH_SIDE = (50, 35, 25)        # by expiry: the near month lists the most
STOCK_LOT_VALUE = 750_000.0                   # rupees of contract value a stock lot aims at
STOCK_VOLS = (0.22, 0.40)                     # ATM volatility range, drawn per stock from the seed

# (price below, strike step) and (price below, equity tick size): NSE's bands, the last one open-ended.
STRIKE_STEPS = ((100, 1.0), (250, 2.5), (500, 5.0), (1000, 10.0), (2500, 20.0), (5000, 50.0),
                (10000, 100.0), (20000, 250.0), (float("inf"), 500.0))
EQUITY_TICKS = ((250, 0.01), (1000, 0.05), (5000, 0.10), (10000, 0.50), (20000, 1.00), (float("inf"), 5.00))


def _band(table, price: float) -> float:
    return next(value for upper, value in table if price < upper)


def strike_step(price: float) -> float:
    return _band(STRIKE_STEPS, price)


def equity_tick(price: float) -> float:
    return _band(EQUITY_TICKS, price)


def stock_lot(price: float) -> int:
    raw = STOCK_LOT_VALUE / price
    step = 1 if raw < 10 else 5 if raw < 100 else 25
    return max(step, int(round(raw / step)) * step)


def load_underlyings(rng, path: Path = DATA_FILE) -> tuple[Underlying, ...]:
    """The file's underlyings; stocks' volatilities are drawn from `rng` (the market's seed)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    found = []
    for k, row in enumerate(rows):
        price = float(row["price"])
        if row["kind"] == "index":
            found.append(Underlying(row["symbol"], row["index_symbol"], int(row["index_token"]), price,
                                    float(row["strike_step"]), int(row["lot_size"]), float(row["atm_vol"]),
                                    row["weekly"] == "1", 0))
        else:
            token = ((FIRST_STOCK_EXCHANGE_TOKEN + k) << 8) | SEGMENT_NSE
            found.append(Underlying(row["symbol"], row["symbol"], token, price, strike_step(price),
                                    stock_lot(price), round(float(rng.uniform(*STOCK_VOLS)), 3), False, 0,
                                    is_index=False))
    return tuple(found)


def option_expiries(u: Underlying, today: date) -> list[date]:
    monthlies = expiries.monthly_expiries_after(today, OPTION_MONTHS)
    if not u.weekly_options:
        return monthlies
    return sorted(set(expiries.weekly_expiries_after(today, NIFTY_WEEKLIES)) | set(monthlies))


def strikes_each_side(u: Underlying, monthly_rank: int) -> int:
    if u.is_index:
        return INDEX_STRIKES_EACH_SIDE
    return STOCK_STRIKES_EACH_SIDE[min(monthly_rank, len(STOCK_STRIKES_EACH_SIDE) - 1)]


def build_universe(underlyings: tuple[Underlying, ...], spots: dict[str, float], today: date) -> list[Instrument]:
    instruments: list[Instrument] = []
    add = instruments.append
    for u in underlyings:   # spots first, as the small universe lists its indices first
        if u.is_index:
            add(Instrument(len(instruments), u.index_token, str(u.index_token >> 8), u.index_symbol,
                           u.index_symbol, None, 0.0, 0.0, 0, "EQ", "INDICES", "NSE", u.name))
        else:
            add(Instrument(len(instruments), u.index_token, str(u.index_token >> 8), u.name, u.name, None,
                           0.0, equity_tick(u.spot_base), 1, "EQ", "NSE", "NSE", u.name))
    exchange_token = FIRST_NFO_EXCHANGE_TOKEN
    monthlies = expiries.monthly_expiries_after(today, max(FUTURE_MONTHS, OPTION_MONTHS))
    for u in underlyings:
        def add_nfo(symbol: str, expiry: date, strike: float, instrument_type: str, segment: str) -> None:
            nonlocal exchange_token
            add(Instrument(len(instruments), (exchange_token << 8) | SEGMENT_NFO, str(exchange_token), symbol,
                           u.name, expiry, strike, TICK_SIZE, u.lot_size, instrument_type, segment, "NFO", u.name))
            exchange_token += 1

        for expiry in monthlies[:FUTURE_MONTHS]:
            add_nfo(expiries.future_symbol(u.name, expiry), expiry, 0.0, "FUT", "NFO-FUT")
        step = u.strike_step
        atm = round(spots[u.name] / step) * step
        for expiry in option_expiries(u, today):
            side = strikes_each_side(u, monthlies.index(expiry) if expiry in monthlies else 0)
            prefix = expiries.option_prefix(u.name, expiry)   # = expiries.option_symbol, once per chain
            for k in range(-side, side + 1):
                strike = round(atm + k * step, 2)
                if strike <= 0:
                    continue
                text = expiries.strike_text(strike)
                for option_type in ("CE", "PE"):
                    add_nfo(f"{prefix}{text}{option_type}", expiry, float(strike), option_type, "NFO-OPT")
    return instruments
