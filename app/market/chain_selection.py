"""Which instruments make up an underlying's chain, to subscribe it in one call.

An expiry's strikes (all of them, or the N on each side of the ATM strike) with both sides, for
one expiry or every live one, and optionally the spot and the live futures the Greeks price
from. The ATM strike is the one nearest the underlying's price: the stream's latest tick of its
spot (else of its nearest future), else the price the instrument dump was loaded with; with no
price at all, the middle strike of the expiry.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.market.instruments import InstrumentInfo, UnderlyingInstruments
from app.market.option_chain import latest_ticks, live_expiries
from app.models import Instrument


@dataclass(frozen=True)
class ChainSelection:
    underlying: str
    expiries: list[date]
    reference_price: float | None  # what the ATM strikes were chosen around
    atm_strikes: dict[date, float]  # per expiry
    strikes: int  # strike rows chosen, over every expiry
    options: list[InstrumentInfo]
    spot_and_futures: list[InstrumentInfo]  # when asked for

    @property
    def tokens(self) -> list[int]:
        return [i.instrument_token for i in self.spot_and_futures + self.options]


def reference_price(found: UnderlyingInstruments, redis, session: Session) -> float | None:
    """The underlying's price now: its spot's (else nearest future's) latest streamed tick, else the
    dump's last price of the same."""
    refs = [i.instrument_token for i in (found.index, found.futures[0] if found.futures else None) if i]
    if not refs:
        return None
    ticks = latest_ticks(redis, refs)
    for token in refs:
        price = (ticks.get(token) or {}).get("last_price")
        if price:
            return float(price)
    stored = dict(session.execute(select(Instrument.instrument_token, Instrument.last_price)
                                  .where(Instrument.instrument_token.in_(refs))).all())
    return next((float(stored[t]) for t in refs if stored.get(t)), None)


def select_chain(found: UnderlyingInstruments, expiry: date | None = None, strikes_each_side: int | None = None,
                 include_underlying: bool = True, price: float | None = None) -> ChainSelection:
    """The chain's instruments; NoSuchChain when the underlying has no live options, or none on `expiry`."""
    chosen_expiries = live_expiries(found, expiry)
    options: list[InstrumentInfo] = []
    atm_strikes: dict[date, float] = {}
    rows = 0
    for day in chosen_expiries:
        legs = found.options_expiring(day)
        strikes = sorted({o.strike for o in legs})
        atm = min(range(len(strikes)), key=lambda k: abs(strikes[k] - price)) if price else len(strikes) // 2
        atm_strikes[day] = strikes[atm]
        if strikes_each_side is not None:
            strikes = strikes[max(0, atm - strikes_each_side): atm + strikes_each_side + 1]
        wanted = set(strikes)
        options.extend(o for o in legs if o.strike in wanted)
        rows += len(strikes)
    underlying = [i for i in (found.index, *found.futures) if i is not None] if include_underlying else []
    return ChainSelection(found.name, chosen_expiries, price, atm_strikes, rows, options, underlying)
