"""Ticks per second the paper broker delivers to one official KiteTicker client.

    .venv/bin/python bench/sim_ticks.py [--target 100000] [--seconds 10] [--mode quote]

Subscribes every instrument of the paper broker on one connection, with
--tick-rate = target / instruments, counts packets from each raw frame's 2-byte
header in `on_message` (the client's pure-Python `on_ticks` parser would be the
bottleneck, not the broker) and reads the broker's CPU time from /proc/PID/stat.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiteconnect import KiteConnect, KiteTicker  # noqa: E402
from twisted.internet import reactor  # noqa: E402

from sim.harness import PaperBroker  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class PacketCounter:
    def __init__(self):
        self.packets = 0
        self.frames = 0
        self.bytes = 0
        self.lock = threading.Lock()

    def on_message(self, ws, payload, is_binary):
        if is_binary and len(payload) > 4:  # 1-byte frames are heartbeats
            self.packets += struct.unpack_from(">H", payload)[0]
            self.frames += 1
            self.bytes += len(payload)

    def snapshot(self):
        return self.packets, self.frames, self.bytes


def run(target: float, seconds: float, mode: str) -> dict:
    with PaperBroker(seed=1, tick_rate=1) as broker:
        tokens = [i["instrument_token"] for i in KiteConnect("bench", access_token="t", root=broker.root).instruments()]
        rate = target / len(tokens)
        broker.settings(tick_rate=rate)
        counter = PacketCounter()
        ticker = KiteTicker("bench", "benchtoken", root=broker.ws_root)
        ticker.on_message = counter.on_message
        ticker.on_connect = lambda ws, response: (ws.subscribe(tokens), ws.set_mode(mode, tokens))
        ticker.connect(threaded=True)
        deadline = time.monotonic() + 10
        while counter.packets == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)  # warm-up
        p0, f0, b0 = counter.snapshot()
        c0, t0, own0 = cpu_seconds(broker.pid), time.monotonic(), sum(os.times()[:2])
        time.sleep(seconds)
        p1, f1, b1 = counter.snapshot()
        c1, t1, own1 = cpu_seconds(broker.pid), time.monotonic(), sum(os.times()[:2])
        reactor.callFromThread(ticker.close)
        time.sleep(0.2)
        elapsed = t1 - t0
        return {
            "mode": mode, "instruments": len(tokens), "tick_rate_per_instrument": round(rate, 2),
            "target_ticks_per_s": target, "seconds": round(elapsed, 2),
            "ticks_per_s": round((p1 - p0) / elapsed), "frames_per_s": round((f1 - f0) / elapsed, 1),
            "mbytes_per_s": round((b1 - b0) / elapsed / 1e6, 2),
            "broker_cpu_percent": round(100 * (c1 - c0) / elapsed, 1),
            "client_cpu_percent": round(100 * (own1 - own0) / elapsed, 1),
            "broker_ticks_sent_total": broker.state()["ticker"]["ticks_sent"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=100_000, help="ticks/s asked of the broker in total")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mode", choices=("ltp", "quote", "full"), default="quote")
    args = parser.parse_args()
    result = run(args.target, args.seconds, args.mode)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
