"""Tick decode and enrichment throughput of the stream engine.

    .venv/bin/python bench/stream_decode.py [--repeat 30]

Prints medians (ticks/s) of:
- workers.stream.frames.decode_frame vs kiteconnect's KiteTicker._parse_binary,
  on full-mode and quote-mode frames of 100, 500 and 1,000 packets;
- frames.decode_frames on the pump's batches at market scale: hundreds of full-mode frames at once;
- frames.to_json_ticks (rows back to dicts, done once per published batch);
- GreeksEnricher.compute (IV + Greeks for a batch of option ticks), when app.greeks is present.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    bench_decode(args.repeat)
    bench_enrich(args.repeat)


if __name__ == "__main__":
    main()
