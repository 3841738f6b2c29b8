"""The paper broker's default ("small") instrument list: two indices, their futures and option chains.

`--universe fno` (the whole F&O segment) is built by sim/fno_universe.py from the same types.

Tokens are minted the way Kite does: instrument_token = exchange_token << 8 | segment,
so the ticker's segment byte (9 = indices, 2 = NFO) is right.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from . import expiries

SEGMENT_NFO = 2
SEGMENT_INDICES = 9
TICK_SIZE = 0.05


@dataclass(frozen=True)
class Underlying:
    name: str            # `name` column of its derivatives
    index_symbol: str    # tradingsymbol of the spot on NSE (the index, or the stock itself)
    index_token: int     # instrument_token of that spot
    spot_base: float     # where the seeded random walk starts (± a little)
    strike_step: float
    lot_size: int
    atm_vol: float
    weekly_options: bool
    exchange_token_base: int
    is_index: bool = True   # False: a stock, whose spot is its NSE equity


# Lot sizes as revised by NSE for 2026 contracts (NIFTY 65, BANKNIFTY 30).
UNDERLYINGS = (
    Underlying("NIFTY", "NIFTY 50", 256265, 26000.0, 50, 65, 0.12, True, 35000),
    Underlying("BANKNIFTY", "NIFTY BANK", 260105, 59000.0, 100, 30, 0.14, False, 45000),
)


@dataclass(frozen=True)
class Instrument:
    index: int                 # position in the market's arrays
    instrument_token: int
    exchange_token: str        # Kite leaves this column a string
    tradingsymbol: str
    name: str
    expiry: date | None
    strike: float
    tick_size: float
    lot_size: int
    instrument_type: str       # EQ (indices, as Kite lists them), FUT, CE, PE
    segment: str
    exchange: str
    underlying: str            # NIFTY / BANKNIFTY

    @property
    def is_index(self) -> bool:
        return self.segment == "INDICES"

    @property
    def is_spot(self) -> bool:
        """The underlying itself: an index, or a stock on NSE (what its derivatives are priced off)."""
        return self.expiry is None and self.instrument_type == "EQ"

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


def option_expiries(underlying: Underlying, today: date) -> list[date]:
    """NIFTY: the next two weeklies plus the next monthly not among them; BANKNIFTY: the next monthly."""
    if not underlying.weekly_options:
        return expiries.monthly_expiries_after(today, 1)
    chosen = expiries.weekly_expiries_after(today, 2)
    monthly = next(m for m in expiries.monthly_expiries_after(today, 3) if m not in chosen)
    return sorted(set(chosen) | {monthly})


def build_universe(spots: dict[str, float], today: date, strikes_each_side: int = 40) -> list[Instrument]:
    instruments: list[Instrument] = []

    def add(**fields) -> None:
        instruments.append(Instrument(index=len(instruments), **fields))

    for u in UNDERLYINGS:
        add(instrument_token=u.index_token, exchange_token=str(u.index_token >> 8),
            tradingsymbol=u.index_symbol, name=u.index_symbol, expiry=None, strike=0.0,
            tick_size=0.0, lot_size=0, instrument_type="EQ", segment="INDICES",
            exchange="NSE", underlying=u.name)
    for u in UNDERLYINGS:
        exchange_token = u.exchange_token_base

        def add_nfo(**fields) -> None:
            nonlocal exchange_token
            exchange_token += 1
            add(instrument_token=(exchange_token << 8) | SEGMENT_NFO, exchange_token=str(exchange_token),
                name=u.name, tick_size=TICK_SIZE, lot_size=u.lot_size, exchange="NFO",
                underlying=u.name, **fields)

        future_expiry = expiries.monthly_expiries_after(today, 1)[0]
        add_nfo(tradingsymbol=expiries.future_symbol(u.name, future_expiry), expiry=future_expiry,
                strike=0.0, instrument_type="FUT", segment="NFO-FUT")
        atm = round(spots[u.name] / u.strike_step) * u.strike_step
        strikes = [atm + k * u.strike_step for k in range(-strikes_each_side, strikes_each_side + 1)]
        for expiry in option_expiries(u, today):
            for strike in strikes:
                for option_type in ("CE", "PE"):
                    add_nfo(tradingsymbol=expiries.option_symbol(u.name, expiry, strike, option_type),
                            expiry=expiry, strike=float(strike), instrument_type=option_type,
                            segment="NFO-OPT")
    return instruments


CSV_COLUMNS = ("instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry",
               "strike", "tick_size", "lot_size", "instrument_type", "segment", "exchange")


class InstrumentDump:
    """Kite's instrument dump (exact column order, no empty numeric cells) for a fixed list of
    instruments: the fixed columns are formatted once, `last_price` at each call (~50 ms for 96,000)."""

    def __init__(self, instruments: list[Instrument]):
        self.indices = np.array([i.index for i in instruments], np.int64)
        self.heads = [f'{i.instrument_token},{i.exchange_token},{i.tradingsymbol},"{i.name}",' for i in instruments]
        self.tails = [",".join(("", i.expiry.isoformat() if i.expiry else "",
                                f"{i.strike:g}" if i.strike else "0.0",
                                f"{i.tick_size:g}" if i.tick_size else "0.0", str(i.lot_size),
                                i.instrument_type, i.segment, i.exchange)) for i in instruments]

    def text(self, last_prices) -> str:
        prices = np.asarray(last_prices, dtype=float)[self.indices].tolist()
        lines = [",".join(CSV_COLUMNS)]
        lines += [f"{head}{price:.2f}{tail}" for head, price, tail in zip(self.heads, prices, self.tails)]
        return "\n".join(lines) + "\n"


def instruments_csv(instruments: list[Instrument], last_prices) -> str:
    return InstrumentDump(instruments).text(last_prices)
