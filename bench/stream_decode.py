"""Tick decode and enrichment throughput of the stream engine.

    .venv/bin/python bench/stream_decode.py [--repeat 30]

Prints medians (ticks/s) of:
- workers.stream.frames.decode_frame vs kiteconnect's KiteTicker._parse_binary,
  on full-mode and quote-mode frames of 100, 500 and 1,000 packets;
- frames.decode_frames on the pump's batches at market scale: hundreds of full-mode frames at once;
- frames.to_json_ticks (rows back to dicts, done once per published batch);
- GreeksEnricher.compute (IV + Greeks for a batch of option ticks), when app.greeks is present;
- TickBatcher.flush of 2,000 / 5,000 / 20,000 FULL option ticks (Greeks, tick JSON, a message per chain)
  and the packing of its Redis commands (workers/stream/resp.py), without Redis.
Frames are built with struct from the wire spec (tests/support/stream_frames.py).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiteconnect import KiteTicker  # noqa: E402

from tests.support.stream_frames import NFO, frame, random_packet, token  # noqa: E402
from workers.stream import frames  # noqa: E402


def median_rate(fn, ticks: int, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return ticks / statistics.median(times)


def bench_decode(repeat: int) -> None:
    kite = KiteTicker("bench", "bench")
    rng = random.Random(1)
    print(f"{'mode':<6}{'packets':>8}{'KiteTicker ticks/s':>20}{'frames.py ticks/s':>20}{'speed-up':>10}{'to_json_ticks/s':>17}")
    for mode in ("full", "quote"):
        for n in (100, 500, 1000):
            data = frame([random_packet(rng, mode, NFO) for _ in range(n)])
            assert len(frames.decode_frame(data)) == len(kite._parse_binary(data)) == n
            theirs = median_rate(lambda: kite._parse_binary(data), n, repeat)
            ours = median_rate(lambda: frames.decode_frame(data), n, repeat)
            rows = frames.decode_frame(data)
            to_json = median_rate(lambda: frames.to_json_ticks(rows), n, repeat)
            print(f"{mode:<6}{n:>8}{theirs:>20,.0f}{ours:>20,.0f}{ours / theirs:>9.1f}x{to_json:>17,.0f}")
    mixed = frame([random_packet(rng, rng.choice(["ltp", "quote", "full", "index_quote", "index_full"]))
                   for _ in range(1000)])
    theirs = median_rate(lambda: kite._parse_binary(mixed), 1000, repeat)
    ours = median_rate(lambda: frames.decode_frame(mixed), 1000, repeat)
    print(f"{'mixed':<6}{1000:>8}{theirs:>20,.0f}{ours:>20,.0f}{ours / theirs:>9.1f}x")
    # What the pump decodes at once at market scale: every frame that waited (tens of packets each).
    print(f"{'frames':>7}{'x packets':>10}{'decode_frames ticks/s':>23}{'ms per call':>13}")
    for count, size in ((100, 30), (1000, 30), (500, 100), (2000, 50)):
        batch = [frame([random_packet(rng, "full", NFO) for _ in range(size)]) for _ in range(count)]
        rate = median_rate(lambda: frames.decode_frames(batch), count * size, repeat)
        print(f"{count:>7}{size:>10}{rate:>23,.0f}{1000 * count * size / rate:>13.2f}")


def bench_enrich(repeat: int) -> None:
    try:
        from workers.stream.enrich import GreeksEnricher, UnderlyingPrices
        from workers.stream.instruments import InstrumentBook, OptionMeta, UnderlyingTokens
        enricher = GreeksEnricher(0.10, 0.0)
        enricher._greeks.warm_up()
    except (ImportError, AttributeError) as exc:
        print(f"enrich: skipped, app.greeks not importable ({exc})")
        return
    rng = np.random.default_rng(2)
    spot_token = token(256, 9)
    today = date.today()
    print(f"{'options':>8}{'enrich ticks/s':>18}{'ms per batch':>14}")
    for n in (100, 1000, 5000):
        options = {}
        for i in range(n):
            tok = token(100_000 + i, NFO)
            options[tok] = OptionMeta(tok, "NIFTY", float(20000 + 50 * (i % 80)), today + timedelta(days=int(1 + i % 60)),
                                      bool(i % 2), 50, f"OPT{i}")
        book = InstrumentBook(options, {"NIFTY": UnderlyingTokens("NIFTY", spot_token)})
        prices = UnderlyingPrices()
        prices.update(np.array([spot_token]), np.array([22000.0]))
        rows = np.zeros(n, dtype=frames.TICK_DTYPE)
        rows["instrument_token"] = book.option_tokens
        strikes, calls = book.option_strike, book.option_is_call
        intrinsic = np.where(calls, np.maximum(22000 - strikes, 0), np.maximum(strikes - 22000, 0))
        rows["last_price"] = np.round(intrinsic + rng.uniform(20, 200, n), 2)
        idx = np.arange(n)
        rate = median_rate(lambda: enricher.compute(book, rows, idx, prices), n, repeat)
        print(f"{n:>8}{rate:>18,.0f}{1000 * n / rate:>14.2f}")


def bench_flush(repeat: int) -> None:
    """A flush as the stream does it, without Redis: newest tick per token, Greeks, tick JSON, one message per
    chain (TickBatcher.flush with a recording publisher), then the Redis commands packed (resp.pack)."""
    from bench.ws_chains import Recorder, build_market
    from workers.stream import resp
    from workers.stream.batcher import TickBatcher
    from workers.stream.enrich import GreeksEnricher

    book, rows = build_market(135, 100)  # 27,000 options over 135 chains, FULL rows with depth
    rng = np.random.default_rng(3)
    print(f"{'ticks':>8}{'flush ms':>10}{'us/tick':>9}{'pack ms':>9}{'messages':>10}{'MB':>6}")
    for n in (2000, 5000, 20000):
        recorder = Recorder()
        batcher = TickBatcher(recorder, book, GreeksEnricher(), window_ms=100, max_size=10**6)
        flushes, packs = [], []
        for _ in range(repeat):
            picked = rows[rng.choice(len(rows), n, replace=False)].copy()
            picked["last_price"] = np.round(picked["last_price"] * (1 + rng.normal(0, 0.001, n)), 2)  # whole paise
            batcher.add(picked)
            started = time.perf_counter()
            batcher.flush()
            flushes.append(time.perf_counter() - started)
            messages = recorder.flushes[-1]
            latest = dict(zip(picked["instrument_token"].tolist(), frames.to_json_texts(picked)))
            started = time.perf_counter()
            resp.pack(messages, "ticks:latest", latest)
            packs.append(time.perf_counter() - started)
        flush = statistics.median(flushes)
        size = sum(len(text) for _, text in messages) / 1e6
        print(f"{n:>8}{flush * 1e3:>10.1f}{flush / n * 1e6:>9.1f}{statistics.median(packs) * 1e3:>9.1f}"
              f"{len(messages):>10}{size:>6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    bench_decode(args.repeat)
    bench_enrich(args.repeat)
    bench_flush(max(5, args.repeat // 3))


if __name__ == "__main__":
    main()
