"""Turn decoded ticks into at most one Redis publish per channel per flush.

A batch opens with its first tick and is flushed ``window_ms`` later (the
stream's ``TICK_BATCH_WINDOW_MS``, default 100) or as soon as ``max_size``
ticks (``TICK_BATCH_MAX_SIZE``, 1,000) are pending, whichever comes first.
Within a batch only the newest tick of each instrument is kept: clients want
the current state, and a 100 ms window bounds how stale it can be.

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
        self.max_size = max_size
        self._clock = clock
        self._wall = wall_clock
        self.prices = UnderlyingPrices()
        self._pending: list[np.ndarray] = []
        self._pending_count = 0
        self._arrivals: list[float] = []  # wall-clock arrival time of each pending frame
        self._opened_at: float | None = None
        self.last_flush: FlushReport | None = None

    @property
    def pending(self) -> int:
        return self._pending_count

    def add(self, rows: np.ndarray, received_at: float | None = None) -> FlushReport | None:
        """Queue decoded rows (one frame). Flushes at once when ``max_size`` is reached."""
        if rows.size == 0:
            return None
        if self._opened_at is None:
            self._opened_at = self._clock()
        self._pending.append(rows)
        self._pending_count += rows.size
        self._arrivals.append(self._wall() if received_at is None else received_at)
        metrics.TICKS_RECEIVED.inc(rows.size)
        if self._pending_count >= self.max_size:
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
        tokens = rows["instrument_token"]
        opt_idx, underlying_id, is_underlying = book.classify(tokens)
        self.prices.update(tokens[is_underlying], rows["last_price"][is_underlying])
        ticks = frames.to_json_ticks(rows)
        is_option = opt_idx >= 0
        if is_option.any():
            self._add_option_fields(book, rows, ticks, np.flatnonzero(is_option), opt_idx[is_option])
        groups: dict[str, list[str]] = {}
        latest: dict[int, str] = {}
        is_option_l, uid_l = is_option.tolist(), underlying_id.tolist()
        for i, tick in enumerate(ticks):
            uid = uid_l[i]
            name = book.names[uid] if uid >= 0 else None
            tick["underlying"] = name
            if name is None:
                channel = OTHER_CHANNEL
            else:
                channel = options_channel(name) if is_option_l[i] else underlying_channel(name)
            text = json.dumps(tick, separators=(",", ":"))
            groups.setdefault(channel, []).append(text)
            latest[tick["instrument_token"]] = text
        published_at = datetime.fromtimestamp(self._wall(), timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        messages = {channel: _message(channel, texts, published_at) for channel, texts in groups.items()}
        result = self.publisher.publish(messages, latest)
        metrics.BATCH_SIZE.observe(len(ticks))
        if result is PublishResult.PUBLISHED:
            n_opt = int(is_option.sum())
            metrics.TICKS_PUBLISHED.labels(kind="options").inc(n_opt)
            metrics.TICKS_PUBLISHED.labels(kind="underlying").inc(len(ticks) - n_opt)
        else:
            metrics.TICKS_DROPPED.labels(reason=result.value).inc(len(ticks))
        return FlushReport(len(ticks), {c: len(t) for c, t in groups.items()}, result)

    def _add_option_fields(self, book: InstrumentBook, rows: np.ndarray, ticks: list[dict],
                           where: np.ndarray, opt_idx: np.ndarray) -> None:
        greeks = None
        if self.enricher is not None:
            greeks = self.enricher.compute(book, rows[where], opt_idx, self.prices)
            columns = {name: greeks[name].tolist() for name in GREEK_NAMES}
            und_price = greeks["underlying_price"].tolist()
            und_source = greeks["underlying_source"].tolist()
        for j, (i, k) in enumerate(zip(where.tolist(), opt_idx.tolist())):
            meta = book.option_meta[k]
            tick = ticks[i]
            tick["tradingsymbol"] = meta.tradingsymbol
            tick["strike"] = meta.strike
            tick["expiry"] = meta.expiry.isoformat()
            tick["option_type"] = "CE" if meta.is_call else "PE"
            tick["lot_size"] = meta.lot_size
            if greeks is None:
                continue
            price = und_price[j]
            tick["underlying_price"] = None if math.isnan(price) else price
            tick["underlying_source"] = SOURCE_NAMES[und_source[j]]
            tick["greeks"] = {name: _finite_or_none(columns[name][j]) for name in GREEK_NAMES}


def latest_per_token(rows: np.ndarray) -> np.ndarray:
    """The newest row of each token, in arrival order of those rows."""
    tokens = rows["instrument_token"]
    if len(tokens) < 2:
        return rows
    _, first_in_reversed = np.unique(tokens[::-1], return_index=True)
    keep = np.sort(len(tokens) - 1 - first_in_reversed)
    return rows if len(keep) == len(tokens) else rows[keep]


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _message(channel: str, tick_texts: list[str], published_at: str) -> str:
    _, underlying, kind = channel.split(":")
    head = json.dumps({
        "type": "ticks", "channel": channel,
        "underlying": None if channel == OTHER_CHANNEL else underlying.upper(),
        "kind": kind, "published_at": published_at, "count": len(tick_texts),
    }, separators=(",", ":"))
    # Ticks are already JSON text (also stored in ticks:latest): splice them in.
    return head[:-1] + ',"ticks":[' + ",".join(tick_texts) + "]}"
