"""Turn decoded ticks into at most one Redis publish per channel per flush.

A batch opens with its first tick and is flushed ``window_ms`` later (the
stream's ``TICK_BATCH_WINDOW_MS``, default 100) or as soon as ticks of
``max_size`` DISTINCT instruments (``TICK_BATCH_MAX_SIZE``, 1,000) are pending,
whichever comes first. Within a batch only the newest tick of each instrument
is kept: clients want the current state, and a 100 ms window bounds how stale
it can be. Counting distinct instruments (not raw ticks) caps the JSON work at
instruments x flushes per second whatever the tick rate: a busy instrument
ticking many times in a window costs one published tick, not a flush.

Channels (underlying lower-case):
    ticker:{underlying}:options     option ticks, with IV and Greeks
    ticker:{underlying}:underlying  the index and its futures
    ticker:other:underlying         subscribed tokens the instrument book does not know

Message (JSON text):
    {"type": "ticks", "channel": ..., "underlying": "NIFTY" | null,
     "kind": "options" | "underlying", "published_at": "...Z", "count": n,
     "ticks": [tick, ...]}
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

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from workers.stream import frames, metrics
from workers.stream.enrich import GREEK_NAMES, SOURCE_NAMES, GreeksEnricher, UnderlyingPrices
from workers.stream.instruments import InstrumentBook
from workers.stream.publisher import PublishResult, RedisPublisher

OTHER_CHANNEL = "ticker:other:underlying"


def options_channel(underlying: str) -> str:
    return f"ticker:{underlying.lower()}:options"


def underlying_channel(underlying: str) -> str:
    return f"ticker:{underlying.lower()}:underlying"


@dataclass
class FlushReport:
    ticks: int  # after keeping the newest per token
    channels: dict[str, int] = field(default_factory=dict)  # channel -> ticks in its message
    result: PublishResult | None = None


class TickBatcher:
    def __init__(self, publisher: RedisPublisher, instruments: InstrumentBook | None = None,
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
        self._option_fragments: list[str] = []
        self._underlying_tails: list[str] = []
        self.last_flush: FlushReport | None = None

    @property
    def pending(self) -> int:
        """Ticks received since the last flush (before keeping the newest per token)."""
        return self._pending_count

    @property
    def pending_instruments(self) -> int:
        """Distinct instruments among the pending ticks: what ``max_size`` caps."""
        return len(self._pending_tokens)

    def add(self, rows: np.ndarray, received_at: float | None = None) -> FlushReport | None:
        """Queue decoded rows (one frame). Flushes at once when ticks of ``max_size``
        distinct instruments are pending."""
        if rows.size == 0:
            return None
        if self._opened_at is None:
            self._opened_at = self._clock()
        self._pending.append(rows)
        self._pending_count += rows.size
        self._pending_tokens.update(rows["instrument_token"].tolist())
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
        report = self._publish(rows)
        now = self._wall()
        if report.result is PublishResult.PUBLISHED:
            for arrived in arrivals:
                metrics.TICK_TO_PUBLISH_SECONDS.observe(max(0.0, now - arrived))
        self.last_flush = report
        return report

    def _publish(self, rows: np.ndarray) -> FlushReport:
        book = self.instruments
        if self._fragments_of is not book:
            self._build_fragments(book)
        tokens = rows["instrument_token"]
        opt_idx, underlying_id, is_underlying = book.classify(tokens)
        self.prices.update(tokens[is_underlying], rows["last_price"][is_underlying])
        texts = frames.to_json_texts(rows, close=False)  # each tick is closed below
        is_option = opt_idx >= 0
        option_rows = np.flatnonzero(is_option)
        if option_rows.size:
            self._add_option_fields(book, rows, texts, option_rows, opt_idx[option_rows])
        # Route by underlying id (-1: not in the book): one channel pair per id.
        tails = self._underlying_tails
        groups: dict[str, list[str]] = {}
        channel_of: dict[tuple[int, bool], list[str]] = {}
        for i, (uid, opt) in enumerate(zip(underlying_id.tolist(), is_option.tolist())):
            texts[i] += tails[uid]  # ',"underlying":...}' (tails[-1] is the null one)
            texts_of = channel_of.get((uid, opt))
            if texts_of is None:
                name = book.names[uid] if uid >= 0 else None
                if name is None:
                    channel = OTHER_CHANNEL
                else:
                    channel = options_channel(name) if opt else underlying_channel(name)
                texts_of = channel_of[(uid, opt)] = groups.setdefault(channel, [])
            texts_of.append(texts[i])
        # One text per tick, shared by its channel message and the ticks:latest hash.
        latest = dict(zip(tokens.tolist(), texts))
        published_at = datetime.fromtimestamp(self._wall(), timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        messages = {channel: _message(channel, texts_, published_at) for channel, texts_ in groups.items()}
        result = self.publisher.publish(messages, latest)
        n = len(texts)
        metrics.BATCH_SIZE.observe(n)
        if result is PublishResult.PUBLISHED:
            n_opt = int(option_rows.size)
            metrics.TICKS_PUBLISHED.labels(kind="options").inc(n_opt)
            metrics.TICKS_PUBLISHED.labels(kind="underlying").inc(n - n_opt)
        else:
            metrics.TICKS_DROPPED.labels(reason=result.value).inc(n)
        return FlushReport(n, {c: len(t) for c, t in groups.items()}, result)

    def _build_fragments(self, book: InstrumentBook) -> None:
        """JSON text that never changes per instrument book: each option's static
        fields and each underlying's closing ``,"underlying":...}``."""
        self._option_fragments = [_option_fragment(meta) for meta in book.option_meta]
        # Indexed by underlying id; the extra last entry serves id -1 (unknown instrument).
        self._underlying_tails = [',"underlying":%s}' % json.dumps(name) for name in book.names]
        self._underlying_tails.append(',"underlying":null}')
        self._fragments_of = book

    def _add_option_fields(self, book: InstrumentBook, rows: np.ndarray, texts: list[str],
                           where: np.ndarray, opt_idx: np.ndarray) -> None:
        fragments = self._option_fragments
        where_l = where.tolist()
        if self.enricher is None:
            for i, k in zip(where_l, opt_idx.tolist()):
                texts[i] += fragments[k]
            return
        greeks = self.enricher.compute(book, rows[where], opt_idx, self.prices)
        price = _json_numbers(greeks["underlying_price"], inf_as_null=False)
        source = [_SOURCE_TEXT[s] for s in greeks["underlying_source"].tolist()]
        columns = [_json_numbers(greeks[name]) for name in GREEK_NAMES]
        template = _GREEKS_TEMPLATE
        for j, (i, k) in enumerate(zip(where_l, opt_idx.tolist())):
            texts[i] += fragments[k] + template % (price[j], source[j], *[c[j] for c in columns])


def latest_per_token(rows: np.ndarray) -> np.ndarray:
    """The newest row of each token, in arrival order of those rows."""
    tokens = rows["instrument_token"]
    if len(tokens) < 2:
        return rows
    _, first_in_reversed = np.unique(tokens[::-1], return_index=True)
    keep = np.sort(len(tokens) - 1 - first_in_reversed)
    return rows if len(keep) == len(tokens) else rows[keep]


_SOURCE_TEXT = [json.dumps(name) for name in SOURCE_NAMES]
_GREEKS_TEMPLATE = (',"underlying_price":%s,"underlying_source":%s,"greeks":{'
                    + ",".join(f'"{name}":%s' for name in GREEK_NAMES) + "}")


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
    values_l = values.tolist()
    finite = np.isfinite(values)
    if finite.all():
        return list(map(repr, values_l))
    if inf_as_null:
        return [repr(x) if ok else "null" for x, ok in zip(values_l, finite.tolist())]
    return ["null" if math.isnan(x) else json.dumps(x) for x in values_l]


def _message(channel: str, tick_texts: list[str], published_at: str) -> str:
    _, underlying, kind = channel.split(":")
    head = json.dumps({
        "type": "ticks", "channel": channel,
        "underlying": None if channel == OTHER_CHANNEL else underlying.upper(),
        "kind": kind, "published_at": published_at, "count": len(tick_texts),
    }, separators=(",", ":"))
    # Ticks are already JSON text (also stored in ticks:latest): splice them in.
    return head[:-1] + ',"ticks":[' + ",".join(tick_texts) + "]}"
