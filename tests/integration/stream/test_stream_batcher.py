"""TickBatcher: windowing, max-size flush, one publish per channel per flush,
latest tick per token, routing to ticker:{underlying}:options|underlying."""
import json
import queue
import random
import time
from datetime import date

import redis

from tests.support.stream_frames import INDICES, NFO, NSE, frame, ltp_packet, random_packet, token
from workers.stream import frames
from workers.stream.batcher import TickBatcher
from workers.stream.instruments import InstrumentBook, OptionMeta, UnderlyingTokens
from workers.stream.publisher import RedisPublisher
from workers.stream.pump import FramePump

NIFTY_INDEX = token(256, INDICES)
NIFTY_FUT = token(9000, NFO)
BANK_INDEX = token(260, INDICES)
CALL = token(9100, NFO)
PUT = token(9101, NFO)
BANK_CALL = token(9200, NFO)
EQUITY = token(500, NSE)


def book():
    options = {
        CALL: OptionMeta(CALL, "NIFTY", 19500.0, date(2031, 1, 30), True, 50, "NIFTY31JAN19500CE"),
        PUT: OptionMeta(PUT, "NIFTY", 19500.0, date(2031, 1, 30), False, 50, "NIFTY31JAN19500PE"),
        BANK_CALL: OptionMeta(BANK_CALL, "BANKNIFTY", 44000.0, date(2031, 1, 30), True, 15, "BANKNIFTY31JAN44000CE"),
    }
    underlyings = {"NIFTY": UnderlyingTokens("NIFTY", NIFTY_INDEX, (NIFTY_FUT,)),
                   "BANKNIFTY": UnderlyingTokens("BANKNIFTY", BANK_INDEX)}
    return InstrumentBook(options, underlyings)


class Listener:
    """A real Redis pattern subscription on ticker:*."""

    def __init__(self, url):
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.pubsub.psubscribe("ticker:*")
        assert self.pubsub.get_message(timeout=2)["type"] == "psubscribe"

    def drain(self, expect=None, timeout=3.0):
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (expect is None or len(out) < expect):
            msg = self.pubsub.get_message(timeout=0.2 if expect is None else 0.5)
            if msg is None and expect is None:
                break
            if msg and msg["type"] == "pmessage":
                out.append((msg["channel"].decode(), json.loads(msg["data"])))
        return out


def rows_of(*packets):
    return frames.decode_frame(frame(list(packets)))


def test_window_gives_one_message_per_channel_with_latest_tick_per_token(redis_url):
    now = [100.0]
    listener = Listener(redis_url)
    batcher = TickBatcher(RedisPublisher.from_url(redis_url), book(), window_ms=100, max_size=1000,
                          clock=lambda: now[0])
    for i in range(10):  # ten frames inside one window, every token ticking each time
        report = batcher.add(rows_of(ltp_packet(CALL, 100_00 + i), ltp_packet(PUT, 90_00 + i),
                                     ltp_packet(NIFTY_INDEX, 19500_00 + i), ltp_packet(NIFTY_FUT, 19550_00 + i),
                                     ltp_packet(BANK_CALL, 300_00 + i), ltp_packet(EQUITY, 2500_00 + i)))
        assert report is None
        now[0] += 0.009
    assert batcher.flush_if_due() is None and batcher.pending == 60
    now[0] = 100.1
    report = batcher.flush_if_due()
    assert report.ticks == 6
    assert report.channels == {"ticker:nifty:options": 2, "ticker:nifty:underlying": 2,
                               "ticker:banknifty:options": 1, "ticker:other:underlying": 1}
    messages = listener.drain(expect=4)
    assert sorted(c for c, _ in messages) == sorted(report.channels)  # exactly one each
    assert listener.drain() == []
    by_channel = dict(messages)
    options = by_channel["ticker:nifty:options"]
    assert options["type"] == "ticks" and options["kind"] == "options" and options["underlying"] == "NIFTY"
    assert options["count"] == 2
    call = next(t for t in options["ticks"] if t["instrument_token"] == CALL)
    assert call["last_price"] == 100.09  # the newest of the ten
    assert (call["tradingsymbol"], call["strike"], call["expiry"], call["option_type"], call["lot_size"]) == (
        "NIFTY31JAN19500CE", 19500.0, "2031-01-30", "CE", 50)
    underlying = {t["instrument_token"]: t for t in by_channel["ticker:nifty:underlying"]["ticks"]}
    assert underlying[NIFTY_INDEX]["last_price"] == 19500.09 and underlying[NIFTY_INDEX]["tradable"] is False
    assert underlying[NIFTY_FUT]["underlying"] == "NIFTY"
    assert by_channel["ticker:other:underlying"]["underlying"] is None
    latest = redis.Redis.from_url(redis_url).hget("ticks:latest", str(CALL))
    assert json.loads(latest) == call
    assert batcher.pending == 0 and batcher.seconds_until_due() is None


def test_max_size_flushes_before_the_window_closes(redis_url):
    now = [0.0]
    listener = Listener(redis_url)
    batcher = TickBatcher(RedisPublisher.from_url(redis_url), book(), window_ms=100, max_size=1000,
                          clock=lambda: now[0])
    rng = random.Random(1)
    big = frames.decode_frame(frame([random_packet(rng, "quote", NSE) for _ in range(600)]))
    more = frames.decode_frame(frame([random_packet(rng, "quote", NSE) for _ in range(600)]))
    assert len(set(big["instrument_token"].tolist()) | set(more["instrument_token"].tolist())) == 1200
    assert batcher.add(big) is None
    # The cap counts distinct instruments: the same 600 tokens again are 1,200
    # pending ticks but only 600 instruments, so no flush yet.
    assert batcher.add(big) is None and batcher.pending == 1200 and batcher.pending_instruments == 600
    report = batcher.add(more)  # 1,200 instruments pending >= 1,000: flush now, no clock change
    assert report is not None and report.ticks == 1200  # big's 600 tokens twice: latest kept
    assert report.channels == {"ticker:other:underlying": 1200}
    assert len(listener.drain(expect=1)) == 1
    assert batcher.pending == 0 and batcher.pending_instruments == 0


def test_max_size_counts_distinct_instruments_not_ticks(redis_url):
    """A few busy instruments ticking many times in a window do not force early
    flushes: JSON work is capped at instruments x flushes, not the tick rate."""
    now = [0.0]
    batcher = TickBatcher(RedisPublisher.from_url(redis_url), book(), window_ms=100, max_size=3,
                          clock=lambda: now[0])
    for i in range(500):  # 1,000 ticks of 2 instruments
        assert batcher.add(rows_of(ltp_packet(CALL, 100_00 + i), ltp_packet(PUT, 90_00 + i))) is None
    assert batcher.pending == 1000 and batcher.pending_instruments == 2
    report = batcher.add(rows_of(ltp_packet(NIFTY_INDEX, 19500_00)))  # the third instrument
    assert report is not None and report.ticks == 3
    assert batcher.pending == 0 and batcher.seconds_until_due() is None


def test_pump_thread_publishes_at_most_once_per_channel_per_flush(redis_url):
    listener = Listener(redis_url)
    batcher = TickBatcher(RedisPublisher.from_url(redis_url), book(), window_ms=100, max_size=1000)
    reports = []
    flush = batcher.flush

    def recording_flush():
        report = flush()
        if report is not None:
            reports.append(report)
        return report

    batcher.flush = recording_flush
    q = queue.Queue()
    pump = FramePump(q, batcher).start()
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 1.0:  # ~500 frames/s for one second
        q.put(("acct", frame([ltp_packet(CALL, 100_00 + sent), ltp_packet(NIFTY_INDEX, 19500_00 + sent)]), time.time()))
        sent += 1
        time.sleep(0.002)
    q.put(("acct", b"\x00", time.time()))  # heartbeat: nothing to publish
    time.sleep(0.3)
    pump.stop()
    messages = listener.drain()
    assert 5 <= len(reports) <= 15  # about one flush per 100 ms window, not one per frame
    for report in reports:
        assert report.channels == {"ticker:nifty:options": 1, "ticker:nifty:underlying": 1}
    assert len(messages) == 2 * len(reports)
    last_call = [m for c, m in messages if c == "ticker:nifty:options"][-1]["ticks"][0]
    assert last_call["last_price"] == (100_00 + sent - 1) / 100


def test_malformed_frames_are_skipped_by_the_pump(redis_url):
    batcher = TickBatcher(RedisPublisher.from_url(redis_url), book(), window_ms=20)
    q = queue.Queue()
    pump = FramePump(q, batcher).start()
    good = frame([ltp_packet(CALL, 123_00)])
    q.put(("acct", good[:-3], time.time()))
    q.put(("acct", good, time.time()))
    time.sleep(0.3)
    pump.stop()
    assert batcher.last_flush is not None and batcher.last_flush.ticks == 1
    assert json.loads(redis.Redis.from_url(redis_url).hget("ticks:latest", str(CALL)))["last_price"] == 123.0
