"""Instrument registry: the broker's instrument dump in the database and in memory.

`app.market.instrument_refresh` decides when the table is refreshed from the broker;
each process keeps an in-memory copy for lookups by token and by tradingsymbol,
reloaded when the table changes.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.models import Instrument, utcnow

DERIVATIVE_SEGMENTS = ("NFO-OPT", "NFO-FUT", "BFO-OPT", "BFO-FUT", "MCX-OPT", "MCX-FUT", "CDS-OPT", "CDS-FUT")


@dataclass(frozen=True)
class InstrumentInfo:
    instrument_token: int
    exchange_token: int
    tradingsymbol: str
    name: str
    exchange: str
    segment: str
    instrument_type: str
    expiry: date | None
    strike: float
    tick_size: float
    lot_size: int

    @property
    def is_derivative(self) -> bool:
        return self.segment in DERIVATIVE_SEGMENTS

    @property
    def is_option(self) -> bool:
        return self.instrument_type in ("CE", "PE")


def _as_date(value) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def normalise_row(row: dict) -> dict:
    """A kiteconnect `instruments()` dict as a row of the instruments table."""
    return {
        "instrument_token": int(row["instrument_token"]),
        "exchange_token": int(row.get("exchange_token") or 0),
        "tradingsymbol": str(row["tradingsymbol"]),
        "name": str(row.get("name") or ""),
        "exchange": str(row["exchange"]),
        "segment": str(row.get("segment") or row["exchange"]),
        "instrument_type": str(row.get("instrument_type") or ""),
        "expiry": _as_date(row.get("expiry")),
        "strike": float(row.get("strike") or 0.0),
        "tick_size": float(row.get("tick_size") or 0.05),
        "lot_size": int(row.get("lot_size") or 1),
        "last_price": float(row.get("last_price") or 0.0),
        "updated_at": utcnow(),
    }


def store_instruments(session: Session, rows: Iterable[dict]) -> int:
    """Replace the stored dump with `rows` in one transaction; returns the count."""
    normalised = [normalise_row(r) for r in rows]
    session.execute(delete(Instrument))
    for start in range(0, len(normalised), 5000):
        session.execute(insert(Instrument), normalised[start:start + 5000])
    return len(normalised)


def _info(inst: Instrument) -> InstrumentInfo:
    return InstrumentInfo(inst.instrument_token, inst.exchange_token, inst.tradingsymbol, inst.name,
                          inst.exchange, inst.segment, inst.instrument_type, inst.expiry,
                          inst.strike, inst.tick_size, inst.lot_size)


class InstrumentRegistry:
    """In-memory lookups, reloaded at most every `check_every` seconds if the table changed."""

    @classmethod
    def of(cls, instruments: Iterable[InstrumentInfo], loaded_at: datetime | None = None) -> "InstrumentRegistry":
        """A registry of these instruments only, loaded at `loaded_at` (default: now), never reloaded
        and without a database (unit tests, tools)."""
        infos = list(instruments)
        fixed = cls(session_factory=None)
        fixed._load(infos, (len(infos), loaded_at or utcnow()))
        return fixed

    def __init__(self, session_factory, check_every: float = 5.0) -> None:
        self._session_factory = session_factory
        self._check_every = check_every
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._version: tuple | None = None
        self._by_token: dict[int, InstrumentInfo] = {}
        self._by_symbol: dict[tuple[str, str], InstrumentInfo] = {}

    def _load(self, infos: list[InstrumentInfo], version: tuple) -> None:
        self._by_token = {i.instrument_token: i for i in infos}
        self._by_symbol = {(i.exchange, i.tradingsymbol): i for i in infos}
        self._version = version

    def _refresh_if_stale(self) -> None:
        if self._session_factory is None:  # a fixed registry (`of`)
            return
        now = time.monotonic()
        if now - self._checked_at < self._check_every and self._version is not None:
            return
        with self._lock:
            if now - self._checked_at < self._check_every and self._version is not None:
                return
            with self._session_factory() as session:
                version = tuple(session.execute(
                    select(func.count(Instrument.instrument_token), func.max(Instrument.updated_at))).one())
                if version != self._version:
                    self._load([_info(i) for i in session.scalars(select(Instrument))], version)
            self._checked_at = now

    @property
    def version(self) -> tuple | None:
        """Changes whenever the table is reloaded (row count, newest update)."""
        return self._version

    @property
    def loaded_at(self) -> datetime | None:
        """When the stored dump was loaded (None while the registry is empty)."""
        self._refresh_if_stale()
        count, newest = self._version or (0, None)
        return newest if count else None

    def invalidate(self) -> None:
        if self._session_factory is None:  # a fixed registry has nothing to reload
            return
        self._checked_at = 0.0
        self._version = None

    def by_token(self, token: int) -> InstrumentInfo | None:
        self._refresh_if_stale()
        return self._by_token.get(int(token))

    def by_symbol(self, exchange: str, tradingsymbol: str) -> InstrumentInfo | None:
        self._refresh_if_stale()
        return self._by_symbol.get((exchange, tradingsymbol))

    def all(self) -> list[InstrumentInfo]:
        self._refresh_if_stale()
        return list(self._by_token.values())


_registry: InstrumentRegistry | None = None


def registry() -> InstrumentRegistry:
    """The process-wide registry over the service database."""
    global _registry
    if _registry is None:
        from app.core.db import new_session

        _registry = InstrumentRegistry(new_session)
    return _registry


# Kite names derivatives by underlying ("NIFTY") but the index by its own symbol.
INDEX_SYMBOLS = {"NIFTY": "NIFTY 50", "BANKNIFTY": "NIFTY BANK", "FINNIFTY": "NIFTY FIN SERVICE",
                 "MIDCPNIFTY": "NIFTY MID SELECT", "SENSEX": "SENSEX", "BANKEX": "BANKEX"}


@dataclass(frozen=True)
class UnderlyingInstruments:
    name: str
    index: InstrumentInfo | None
    futures: tuple[InstrumentInfo, ...]  # nearest expiry first
    options: tuple[InstrumentInfo, ...]


def option_underlyings(instruments: Iterable[InstrumentInfo]) -> list[str]:
    return sorted({i.name for i in instruments if i.is_option and i.name})


def underlying_instruments(instruments: Iterable[InstrumentInfo], name: str,
                           today: date | None = None) -> UnderlyingInstruments:
    """The index, live futures and live options of one underlying."""
    today = today or date.today()
    instruments = list(instruments)
    index_symbol = INDEX_SYMBOLS.get(name, name)
    index = next((i for i in instruments if i.segment == "INDICES" and i.tradingsymbol == index_symbol), None)
    futures = sorted((i for i in instruments if i.name == name and i.instrument_type == "FUT"
                      and i.expiry and i.expiry >= today), key=lambda i: i.expiry)
    options = tuple(i for i in instruments if i.name == name and i.is_option and i.expiry and i.expiry >= today)
    return UnderlyingInstruments(name, index, tuple(futures), options)
