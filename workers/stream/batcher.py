"""Turn decoded ticks into at most one Redis publish per channel per flush.

A batch opens with its first tick and is flushed ``window_ms`` later (the
stream's ``TICK_BATCH_WINDOW_MS``, default 100) or as soon as ticks of
``max_size`` DISTINCT instruments (``TICK_BATCH_MAX_SIZE``, 30,000) are pending,
whichever comes first. Within a batch only the newest tick of each instrument
is kept: clients want the current state, and a 100 ms window bounds how stale
it can be. Counting distinct instruments (not raw ticks) caps the JSON work at
instruments x flushes per second whatever the tick rate: a busy instrument
ticking many times in a window costs one published tick, not a flush.

Channels (underlying lower-case):
    ticker:{underlying}:options     option ticks, with IV and Greeks: one message per
                                    chain (underlying, expiry) per flush
    ticker:{underlying}:underlying  the index and its futures: one message per flush
    ticker:other:underlying         subscribed tokens the instrument book does not know

Message (JSON text):
    {"type": "ticks", "channel": ..., "underlying": "NIFTY" | null,
     "kind": "options" | "underlying", "expiry": "YYYY-MM-DD" (options only),
     "published_at": "...Z", "count": n, "ticks": [tick, ...]}
Everything before ``"ticks"`` is the head, written first and short: the WebSocket relay
routes a message to a chain's watchers by reading its channel and head, never its ticks.
A tick has KiteTicker's keys (``frames.to_json_ticks``, UTC ISO timestamps)
plus ``underlying``; option ticks add ``tradingsymbol, strike, expiry,
option_type, lot_size, underlying_price, underlying_source`` (enrich.py) and ``greeks``
(``iv, delta, gamma, theta, vega, rho``; ``null`` when not computable).
The same tick JSON is stored in the ``ticks:latest`` hash (publisher.py).
Tick JSON is written as text straight from the NumPy columns
(``frames.to_json_texts`` plus cached per-option fragments), byte-for-byte what
``json.dumps(tick, separators=(",", ":"))`` of the dict described above gives;
each tick is serialised once and the same string goes into its channel message
and into ``ticks:latest``.

Not thread-safe: one pump thread owns a batcher (see pump.py).
"""
from __future__ import annotations

import functools
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from workers.stream import frames, metrics
from workers.stream.enrich import GREEK_NAMES, SOURCE_NAMES, GreeksEnricher, UnderlyingPrices
from workers.stream.instruments import InstrumentBook
from workers.stream.json_numbers import float_texts
from workers.stream.publisher import PublishResult, PublishStage, RedisPublisher

OTHER_CHANNEL = "ticker:other:underlying"


def options_channel(underlying: str) -> str:
    return f"ticker:{underlying.lower()}:options"


def underlying_channel(underlying: str) -> str:
    return f"ticker:{underlying.lower()}:underlying"


@dataclass
class FlushReport:
    ticks: int  # after keeping the newest per token
    channels: dict[str, int] = field(default_factory=dict)  # channel -> ticks in its messages
    chains: dict[str, int] = field(default_factory=dict)  # "NIFTY:2031-01-30" -> ticks in its message
    result: PublishResult | None = None  # None: handed to a PublishStage, published on its thread


class TickBatcher:
    def __init__(self, publisher: "RedisPublisher | PublishStage", instruments: InstrumentBook | None = None,
                 enricher: GreeksEnricher | None = None, window_ms: int = 100, max_size: int = 1000,
                 clock=time.monotonic, wall_clock=time.time) -> None:
        self.publisher = publisher
        self.instruments = instruments or InstrumentBook()  # swap in a new book at any time
        self.enricher = enricher
        self.window_s = window_ms / 1000.0
        self.max_size = max_size  # distinct instruments pending that force a flush
        self._clock = clock
        self._wall = wall_clock
        self.prices = UnderlyingPrices()
        self._pending: list[np.ndarray] = []
        self._pending_count = 0
        self._pending_tokens: set[int] = set()
        self._arrivals: list[float] = []  # wall-clock arrival time of each pending frame
        self._opened_at: float | None = None
        self._fragments_of: InstrumentBook | None = None  # the book _option_fragments was built from
        self._option_fragments = np.zeros(0, dtype=object)  # per option index: its static fields' text
        self._underlying_tails = np.zeros(0, dtype=object)  # per underlying id: ',"underlying":...}'
        self._option_chain = np.zeros(0, dtype=np.int64)  # per option index: its chain's number
        self._chains: list[tuple[str, str]] = []  # per chain number: (channel, expiry)
        self.last_flush: FlushReport | None = None

    @property
    def pending(self) -> int:
        """Ticks received since the last flush (before keeping the newest per token)."""
        return self._pending_count

    @property
    def pending_instruments(self) -> int:
        """Distinct instruments among the pending ticks: what ``max_size`` caps."""
        return len(self._pending_tokens)

    def add(self, rows: np.ndarray, received_at: float | None = None,
            arrivals: list[float] | None = None) -> FlushReport | None:
        """Queue decoded rows (one frame, or several: `arrivals` then gives each frame's arrival).
        Flushes at once when ticks of ``max_size`` distinct instruments are pending."""
        if rows.size == 0:
            return None
        if self._opened_at is None:
            self._opened_at = self._clock()
        self._pending.append(rows)
        self._pending_count += rows.size
        self._pending_tokens.update(rows["instrument_token"].tolist())
        if arrivals:
            self._arrivals.extend(arrivals)
        else:
            self._arrivals.append(self._wall() if received_at is None else received_at)
        metrics.TICKS_RECEIVED.inc(rows.size)
        if len(self._pending_tokens) >= self.max_size:
            return self.flush()
        return None

    def seconds_until_due(self) -> float | None:
        """Time left in the open window; None when nothing is pending."""
        if self._opened_at is None:
            return None
        return max(0.0, self._opened_at + self.window_s - self._clock())

    def flush_if_due(self) -> FlushReport | None:
        due = self.seconds_until_due()
        if due is not None and due <= 0.0:
            return self.flush()
        return None

    def flush(self) -> FlushReport | None:
        if not self._pending:
            return None
        rows = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        arrivals = self._arrivals
        self._pending, self._pending_count, self._arrivals, self._opened_at = [], 0, [], None
        self._pending_tokens = set()
        rows = latest_per_token(rows)
        report = self._publish(rows, arrivals)
        self.last_flush = report
        return report

    def _publish(self, rows: np.ndarray, arrivals: list[float]) -> FlushReport:
        book = self.instruments
        if self._fragments_of is not book:
            self._build_fragments(book)
        tokens = rows["instrument_token"]
        opt_idx, underlying_id, is_underlying = book.classify(tokens)
        self.prices.update(tokens[is_underlying], rows["last_price"][is_underlying])
        texts = frames.to_json_texts(rows, close=False)  # each tick is closed below
        n = len(texts)
        option_rows = np.flatnonzero(opt_idx >= 0)
        # Each tick's text is its columns' text, its option fields (and Greeks), and its underlying:
        # joined in C (map/zip over whole columns), never tick by tick in Python.
        tails = self._underlying_tails[underlying_id]  # ',"underlying":...}' (id -1: the null one, last)
        if option_rows.size == 0:
            texts = list(map(str.__add__, texts, tails.tolist()))
        else:
            columns, whole = np.array(texts, dtype=object), np.empty(n, dtype=object)
            others = np.flatnonzero(opt_idx < 0)
            whole[others] = list(map(str.__add__, columns[others].tolist(), tails[others].tolist()))
            whole[option_rows] = self._option_texts(book, rows, option_rows, opt_idx[option_rows],
                                                    columns[option_rows].tolist(), tails[option_rows].tolist())
            texts = whole.tolist()
        # One text per tick, shared by its channel message and the ticks:latest hash.
        latest = dict(zip(tokens.tolist(), texts))
        published_at = datetime.fromtimestamp(self._wall(), timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        groups = self._groups(book, texts, opt_idx, underlying_id)
        messages = [(channel, _message(channel, texts_, published_at, expiry))
                    for (channel, expiry), texts_ in groups]
        metrics.BATCH_SIZE.observe(n)
        record = functools.partial(self._record, n, int(option_rows.size), arrivals)
        if isinstance(self.publisher, PublishStage):
            self.publisher.publish(messages, latest, record)  # on its thread: Redis I/O overlaps the next batch
            result = None
        else:
            result = self.publisher.publish(messages, latest)
            record(result)
        channels: dict[str, int] = {}
        chains: dict[str, int] = {}
        for (channel, expiry), texts_ in groups:
            channels[channel] = channels.get(channel, 0) + len(texts_)
            if expiry is not None:
                chains[f"{channel.split(':')[1].upper()}:{expiry}"] = len(texts_)
        return FlushReport(n, channels, chains, result)

    def _record(self, n: int, n_options: int, arrivals: list[float], result: PublishResult) -> None:
        if result is PublishResult.PUBLISHED:
            metrics.TICKS_PUBLISHED.labels(kind="options").inc(n_options)
            metrics.TICKS_PUBLISHED.labels(kind="underlying").inc(n - n_options)
            now = self._wall()
            for arrived in arrivals:
                metrics.TICK_TO_PUBLISH_SECONDS.observe(max(0.0, now - arrived))
        else:
            metrics.TICKS_DROPPED.labels(reason=result.value).inc(n)

    def _build_fragments(self, book: InstrumentBook) -> None:
        """JSON text that never changes per instrument book: each option's static
        fields and each underlying's closing ``,"underlying":...}``."""
        self._option_fragments = np.array([_option_fragment(meta) for meta in book.option_meta], dtype=object)
        # Indexed by underlying id; the extra last entry serves id -1 (unknown instrument).
        self._underlying_tails = np.array([',"underlying":%s}' % json.dumps(name) for name in book.names]
                                          + [',"underlying":null}'], dtype=object)
        # Each option's chain, (underlying id, expiry), numbered; a chain's message goes on its underlying's
        # options channel with its expiry in the head.
        chain_of: dict[tuple[int, str], int] = {}
        self._option_chain = np.array([chain_of.setdefault((int(uid), meta.expiry.isoformat()), len(chain_of))
                                       for uid, meta in zip(book.option_underlying.tolist(), book.option_meta)],
                                      dtype=np.int64)
        self._chains = [(options_channel(book.names[uid]), expiry) for (uid, expiry) in chain_of]
        self._fragments_of = book

    def _option_texts(self, book: InstrumentBook, rows: np.ndarray, where: np.ndarray, opt_idx: np.ndarray,
                      texts: list[str], tails: list[str]) -> list[str]:
        """Option ticks' whole texts: columns, static option fields, with an enricher its Greeks, the
        underlying. One join per tick over all its pieces (not a %-format and two concatenations)."""
        fragments = self._option_fragments[opt_idx].tolist()
        if self.enricher is None:
            return list(map("".join, zip(texts, fragments, tails)))
        greeks = self.enricher.compute(book, rows[where], opt_idx, self.prices)
        values = [_json_numbers(greeks["underlying_price"], inf_as_null=False),
                  _SOURCE_TEXT[greeks["underlying_source"]].tolist(),
                  *(_json_numbers(greeks[name]) for name in GREEK_NAMES)]
        n = len(fragments)
        pieces: list = [texts, fragments]
        for constant, column in zip(_GREEKS_PIECES, values):
            pieces += (itertools.repeat(constant, n), column)
        pieces += (itertools.repeat(_GREEKS_PIECES[-1], n), tails)
        return list(map("".join, zip(*pieces)))

    def _groups(self, book: InstrumentBook, texts: list[str], opt_idx: np.ndarray,
                underlying_id: np.ndarray) -> list[tuple[tuple[str, str | None], list[str]]]:
        """((channel, expiry or None), tick texts) of each message, in the order their first tick
        came, ticks in arrival order: one message per option chain, one per underlying's spot and
        futures, one for instruments the book does not know."""
        chains = len(self._chains)
        key = len(self._chains) + 1 + underlying_id  # not an option: its underlying (id -1: unknown)
        if self._option_chain.size:
            key = np.where(opt_idx >= 0, self._option_chain[np.maximum(opt_idx, 0)], key)
        distinct, first, group = np.unique(key, return_index=True, return_inverse=True)
        order = np.argsort(group.reshape(-1), kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(group.reshape(-1), minlength=len(distinct))))).tolist()
        in_order = np.array(texts, dtype=object)[order].tolist()
        out = []
        for g in np.argsort(first).tolist():
            k = int(distinct[g])
            if k < chains:
                head = self._chains[k]
            else:
                uid = k - chains - 1
                head = (OTHER_CHANNEL if uid < 0 else underlying_channel(book.names[uid]), None)
            out.append((head, in_order[bounds[g]:bounds[g + 1]]))
        return out


def latest_per_token(rows: np.ndarray) -> np.ndarray:
    """The newest row of each token, in arrival order of those rows."""
    tokens = rows["instrument_token"]
    if len(tokens) < 2:
        return rows
    _, first_in_reversed = np.unique(tokens[::-1], return_index=True)
    keep = np.sort(len(tokens) - 1 - first_in_reversed)
    return rows if len(keep) == len(tokens) else rows[keep]


_SOURCE_TEXT = np.array([json.dumps(name) for name in SOURCE_NAMES], dtype=object)
_GREEKS_TEMPLATE = (',"underlying_price":%s,"underlying_source":%s,"greeks":{'
                    + ",".join(f'"{name}":%s' for name in GREEK_NAMES) + "}")
_GREEKS_PIECES = _GREEKS_TEMPLATE.split("%s")  # the text around each value, in order


def _option_fragment(meta) -> str:
    """``,"tradingsymbol":...,"lot_size":...`` of one option, as json.dumps writes them."""
    return "".join(f",{json.dumps(key)}:{json.dumps(value)}" for key, value in (
        ("tradingsymbol", meta.tradingsymbol), ("strike", meta.strike), ("expiry", meta.expiry.isoformat()),
        ("option_type", "CE" if meta.is_call else "PE"), ("lot_size", meta.lot_size)))


def _json_numbers(values: np.ndarray, inf_as_null: bool = True) -> list[str]:
    """JSON text of each float, as before: finite values as json.dumps writes
    them (``repr``), NaN as null; infinities as null for the Greeks (any
    non-finite Greek is null) but as json.dumps' ``Infinity`` for the
    underlying price, which is only NaN-checked."""
    return float_texts(values, nonfinite_as_json=not inf_as_null)


def _message(channel: str, tick_texts: list[str], published_at: str, expiry: str | None = None) -> str:
    # Ticks are already JSON text (also stored in ticks:latest): splice them in.
    return (_head_start(channel, expiry) + '"published_at":"%s","count":%d,"ticks":[' % (published_at, len(tick_texts))
            + ",".join(tick_texts) + "]}")


@functools.lru_cache(maxsize=65536)
def _head_start(channel: str, expiry: str | None) -> str:
    """The head's fixed keys, up to ``published_at`` (hundreds of chains a flush at market scale:
    written once each, not json.dumps'ed every time)."""
    _, underlying, kind = channel.split(":")
    fields = {"type": "ticks", "channel": channel,
              "underlying": None if channel == OTHER_CHANNEL else underlying.upper(), "kind": kind}
    if expiry is not None:  # an option chain's message: the relay routes it by this, read from the head
        fields["expiry"] = expiry
    return json.dumps(fields, separators=(",", ":"))[:-1] + ","
