"""Instrument registry: the broker's instrument dump in the database and in memory.

`app.market.instrument_refresh` decides when the table is refreshed from the broker;
each process keeps an in-memory copy for lookups by token, by tradingsymbol and by
underlying, reloaded when the table changes.

Sized for Kite's whole dump (~100,000 instruments, most of them NFO options): the copy is
loaded as plain columns (no ORM objects), its entries are slotted with their repeated strings
and dates shared, and the derivatives are grouped by underlying once per load, so an
underlying's chain is found without a pass over every instrument.
"""
from __future__ import annotations

import csv
import io
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.models import Instrument, utcnow

DERIVATIVE_SEGMENTS = ("NFO-OPT", "NFO-FUT", "BFO-OPT", "BFO-FUT", "MCX-OPT", "MCX-FUT", "CDS-OPT", "CDS-FUT")
STORE_CHUNK = 5000  # rows per INSERT: one statement per chunk, well under any driver's parameter limit


@dataclass(frozen=True, slots=True)
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
    """Replace the stored dump with `rows` (kiteconnect `instruments()` dicts) in one transaction;
    returns the count. PostgreSQL (psycopg2) takes them with COPY (a 100,000-row dump in a few seconds; as
    INSERTs, several times that); other databases in chunked INSERTs."""
    normalised = [normalise_row(r) for r in rows]
    session.execute(delete(Instrument))
    if normalised and session.get_bind().dialect.driver == "psycopg2":
        _copy_into_postgresql(session, normalised)
        return len(normalised)
    for start in range(0, len(normalised), STORE_CHUNK):
        session.execute(insert(Instrument), normalised[start:start + STORE_CHUNK])
    return len(normalised)


_COPY_NULL = r"\N"  # not the CSV default (an empty field), which would store an empty name as NULL


def _copy_into_postgresql(session: Session, rows: list[dict]) -> None:
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows([_COPY_NULL if value is None else value for value in row.values()] for row in rows)
    buffer.seek(0)
    cursor = session.connection().connection.driver_connection.cursor()  # this transaction's connection
    cursor.copy_expert(f"COPY {Instrument.__tablename__} ({', '.join(columns)}) FROM STDIN "
                       f"WITH (FORMAT csv, NULL '{_COPY_NULL}')", buffer)


_COLUMNS = (Instrument.instrument_token, Instrument.exchange_token, Instrument.tradingsymbol, Instrument.name,
            Instrument.exchange, Instrument.segment, Instrument.instrument_type, Instrument.expiry,
            Instrument.strike, Instrument.tick_size, Instrument.lot_size)


def _infos(rows) -> list[InstrumentInfo]:
    """Table rows (the _COLUMNS) as registry entries. A dump repeats a few hundred names, a handful
    of exchanges, segments and types, and a few dozen expiries: one object each, not one per row."""
    intern = sys.intern
    dates: dict = {}
    infos = []
    for token, exchange_token, symbol, name, exchange, segment, kind, expiry, strike, tick, lot in rows:
        if expiry is not None:
            expiry = dates.setdefault(expiry, expiry)
        infos.append(InstrumentInfo(token, exchange_token, symbol, intern(name), intern(exchange), intern(segment),
                                    intern(kind), expiry, strike, tick, lot))
    return infos


# Kite names derivatives by underlying ("NIFTY") but the index by its own symbol.
INDEX_SYMBOLS = {"NIFTY": "NIFTY 50", "BANKNIFTY": "NIFTY BANK", "FINNIFTY": "NIFTY FIN SERVICE",
                 "MIDCPNIFTY": "NIFTY MID SELECT", "NIFTYNXT50": "NIFTY NEXT 50", "SENSEX": "SENSEX",
                 "BANKEX": "BANKEX"}
SPOT_EXCHANGES = ("NSE", "BSE")  # a stock's own listing is its spot (the derivatives' name is its symbol)


@dataclass(frozen=True)
class UnderlyingInstruments:
    name: str
    index: InstrumentInfo | None  # the spot: the index, or for a stock its NSE (else BSE) equity
    futures: tuple[InstrumentInfo, ...]  # nearest expiry first
    options: tuple[InstrumentInfo, ...]  # by expiry, then strike, CE before PE

    @property
    def expiries(self) -> list[date]:
        """The option expiries, nearest first."""
        return sorted({o.expiry for o in self.options})

    def options_expiring(self, expiry: date) -> tuple[InstrumentInfo, ...]:
        return tuple(o for o in self.options if o.expiry == expiry)


@dataclass(frozen=True, slots=True)
class _Derivatives:
    """One underlying's futures and options, sorted once (expired ones included: `today` filters)."""
    futures: tuple[InstrumentInfo, ...]
    options: tuple[InstrumentInfo, ...]

    def live(self, name: str, spot: InstrumentInfo | None, today: date) -> UnderlyingInstruments:
        return UnderlyingInstruments(name, spot, tuple(f for f in self.futures if f.expiry >= today),
                                     tuple(o for o in self.options if o.expiry >= today))


def _group(instruments: Iterable[InstrumentInfo]) -> dict[str, _Derivatives]:
    """Dated futures and options by underlying name, in one pass."""
    futures: dict[str, list[InstrumentInfo]] = {}
    options: dict[str, list[InstrumentInfo]] = {}
    for i in instruments:
        if not i.name or i.expiry is None:
            continue
        if i.instrument_type == "FUT":
            futures.setdefault(i.name, []).append(i)
        elif i.instrument_type in ("CE", "PE"):
            options.setdefault(i.name, []).append(i)
    return {name: _Derivatives(tuple(sorted(futures.get(name, ()), key=lambda f: f.expiry)),
                               tuple(sorted(options.get(name, ()),
                                            key=lambda o: (o.expiry, o.strike, o.instrument_type))))
            for name in futures.keys() | options.keys()}


def _find_spot(by_symbol: dict[tuple[str, str], InstrumentInfo], name: str) -> InstrumentInfo | None:
    symbol = INDEX_SYMBOLS.get(name, name)
    for exchange in SPOT_EXCHANGES:
        index = by_symbol.get((exchange, symbol))
        if index is not None and index.segment == "INDICES":
            return index
    for exchange in SPOT_EXCHANGES:
        equity = by_symbol.get((exchange, name))
        if equity is not None and equity.instrument_type == "EQ" and equity.segment == exchange:
            return equity
    return None


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
        self._derivatives: dict[str, _Derivatives] = {}
        self._option_names: list[str] = []

    def _load(self, infos: list[InstrumentInfo], version: tuple) -> None:
        by_token = {i.instrument_token: i for i in infos}
        by_symbol = {(i.exchange, i.tradingsymbol): i for i in infos}
        derivatives = _group(infos)
        option_names = sorted(name for name, d in derivatives.items() if d.options)
        # Readers take whichever maps they find: each is complete, the swap is one assignment each.
        self._by_token, self._by_symbol = by_token, by_symbol
        self._derivatives, self._option_names = derivatives, option_names
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
                    self._load(_infos(session.execute(select(*_COLUMNS))), version)
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

    def missing(self, tokens: Iterable[int]) -> list[int]:
        """Those of `tokens` the registry does not know (one staleness check for all of them)."""
        self._refresh_if_stale()
        known = self._by_token
        return [t for t in tokens if t not in known]

    def by_symbol(self, exchange: str, tradingsymbol: str) -> InstrumentInfo | None:
        self._refresh_if_stale()
        return self._by_symbol.get((exchange, tradingsymbol))

    def all(self) -> list[InstrumentInfo]:
        self._refresh_if_stale()
        return list(self._by_token.values())

    def option_underlyings(self) -> list[str]:
        """Names with options in the dump (expired ones too), sorted."""
        self._refresh_if_stale()
        return list(self._option_names)

    def underlying(self, name: str, today: date | None = None) -> UnderlyingInstruments:
        """The spot, live futures and live options of one underlying (empty when unknown)."""
        self._refresh_if_stale()
        by_symbol, derivatives = self._by_symbol, self._derivatives.get(name)
        spot = _find_spot(by_symbol, name)
        if derivatives is None:
            return UnderlyingInstruments(name, spot, (), ())
        return derivatives.live(name, spot, today or date.today())


_registry: InstrumentRegistry | None = None


def registry() -> InstrumentRegistry:
    """The process-wide registry over the service database."""
    global _registry
    if _registry is None:
        from app.core.db import new_session

        _registry = InstrumentRegistry(new_session)
    return _registry


def option_underlyings(instruments: "Iterable[InstrumentInfo] | InstrumentRegistry") -> list[str]:
    if isinstance(instruments, InstrumentRegistry):
        return instruments.option_underlyings()
    return sorted({i.name for i in instruments if i.is_option and i.name})


def underlying_instruments(instruments: "Iterable[InstrumentInfo] | InstrumentRegistry", name: str,
                           today: date | None = None) -> UnderlyingInstruments:
    """The spot, live futures and live options of one underlying. Given the registry, from its index by
    name; given a list, one pass over it (a list of the whole dump is ~100,000 entries: pass the registry)."""
    if isinstance(instruments, InstrumentRegistry):
        return instruments.underlying(name, today)
    spot_symbols = (name, INDEX_SYMBOLS.get(name, name))
    own = (i for i in instruments if i.name == name or (i.expiry is None and i.tradingsymbol in spot_symbols))
    return InstrumentRegistry.of(own).underlying(name, today)
