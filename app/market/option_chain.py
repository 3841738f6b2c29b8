"""The live option chain: the registry's strikes filled from the stream's latest ticks.

The stream keeps the newest enriched tick of every subscribed instrument in the
Redis hash `ticks:latest` (workers/stream/publisher.py); IV and Greeks in it are
computed by the stream per batch (see workers/stream/enrich.py for the
underlying price it uses).
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

from app.market.instruments import InstrumentInfo, UnderlyingInstruments, underlying_instruments
from app.core.timestamps import iso

LATEST_TICKS_KEY = "ticks:latest"
GREEKS = ("iv", "delta", "gamma", "theta", "vega", "rho")


class NoSuchChain(Exception):
    pass


def latest_ticks(redis, tokens: list[int]) -> dict[int, dict]:
    if not tokens:
        return {}
    values = redis.hmget(LATEST_TICKS_KEY, [str(t) for t in tokens])
    return {t: json.loads(v) for t, v in zip(tokens, values) if v}


def _quote(info: InstrumentInfo, tick: dict | None) -> dict:
    tick = tick or {}
    greeks = tick.get("greeks") or {}
    return {
        "instrument_token": info.instrument_token,
        "tradingsymbol": info.tradingsymbol,
        "lot_size": info.lot_size,
        "last_price": tick.get("last_price"),
        "change": tick.get("change"),
        "oi": tick.get("oi"),
        "volume": tick.get("volume_traded"),
        **{g: greeks.get(g) for g in GREEKS},
    }


def expiries(instruments, underlying: str, today: date | None = None) -> list[date]:
    return underlying_instruments(instruments, underlying, today).expiries


def live_expiries(found: UnderlyingInstruments, expiry: date | None = None) -> list[date]:
    """The underlying's live option expiries, nearest first (only `expiry`, when given); NoSuchChain
    when it has none, or not `expiry`."""
    available = found.expiries
    if not available:
        raise NoSuchChain(f"no live options for underlying {found.name!r}")
    if expiry is None:
        return available
    if expiry not in available:
        raise NoSuchChain(f"no {found.name} options expire on {expiry.isoformat()} "
                          f"(live expiries: {', '.join(e.isoformat() for e in available)})")
    return [expiry]


def build_chain(instruments, redis, underlying: str, expiry: date | None = None,
                today: date | None = None) -> dict:
    found = underlying_instruments(instruments, underlying, today)
    expiry = live_expiries(found, expiry)[0]  # the nearest when none is asked for
    legs = found.options_expiring(expiry)
    future = found.futures[0] if found.futures else None
    tokens = [o.instrument_token for o in legs] + [i.instrument_token for i in (found.index, future) if i]
    ticks = latest_ticks(redis, tokens)

    strikes: dict[float, dict] = {}
    for option in legs:
        row = strikes.setdefault(option.strike, {"strike": option.strike, "CE": None, "PE": None})
        row[option.instrument_type] = _quote(option, ticks.get(option.instrument_token))

    spot_price = ticks.get(found.index.instrument_token, {}).get("last_price") if found.index else None
    future_price = ticks.get(future.instrument_token, {}).get("last_price") if future else None
    reference = spot_price or future_price
    ordered = [strikes[k] for k in sorted(strikes)]
    atm = min(strikes, key=lambda k: abs(k - reference)) if reference and strikes else None
    return {
        "underlying": underlying,
        "expiry": expiry.isoformat(),
        "expiries": [e.isoformat() for e in found.expiries],
        "spot": {"instrument_token": found.index.instrument_token, "tradingsymbol": found.index.tradingsymbol,
                 "last_price": spot_price} if found.index else None,
        "future": {"instrument_token": future.instrument_token, "tradingsymbol": future.tradingsymbol,
                   "last_price": future_price} if future else None,
        "atm_strike": atm,
        "lot_size": legs[0].lot_size,
        "strikes": ordered,
        "updated_at": iso(datetime.now(timezone.utc)),
    }
