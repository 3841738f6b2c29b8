"""Ticks per second the paper broker delivers: to one official KiteTicker client, or to many raw sockets.

    .venv/bin/python bench/sim_ticks.py [--target 100000] [--seconds 10] [--mode quote]
    .venv/bin/python bench/sim_ticks.py --universe fno --accounts 3 --connections 3 --per-connection 3000 \
        --mode full [--target 150000] [--seconds 10]

Default: subscribes every instrument of the paper broker on one KiteTicker connection, with
--tick-rate = target / instruments, counts packets from each raw frame's 2-byte
header in `on_message` (the client's pure-Python `on_ticks` parser would be the
bottleneck, not the broker) and reads the broker's CPU time from /proc/PID/stat.
With --accounts: registers that many accounts (POST /_sim/accounts), opens --connections raw
WebSocket clients (aiohttp) per account, each subscribing --per-connection distinct instruments
drawn at random (seeded) from the universe, with --tick-rate = target / the sum of their tick
weights (instrument i ticks at rate × w_i; the weights average 1, so the rate is ~ target /
subscriptions); counts packets and the distinct instruments that ticked from each frame.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
from kiteconnect import KiteConnect, KiteTicker  # noqa: E402
import requests  # noqa: E402
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


class FrameCounter:
    """Packets, bytes and the distinct instruments in the frames of many raw connections."""

    def __init__(self):
        self.packets = self.frames = self.bytes = 0
        self.tokens: set[int] = set()

    def add(self, payload: bytes) -> None:
        if len(payload) <= 4:   # heartbeats
            return
        count = struct.unpack_from(">H", payload)[0]
        self.packets += count
        self.frames += 1
        self.bytes += len(payload)
        if len(payload) == 2 + count * 186:   # FULL packets only: every token at a fixed offset
            rows = np.frombuffer(payload, np.uint8, offset=2).reshape(count, 186)
            self.tokens.update(rows[:, 2:6].copy().view(">u4").ravel().tolist())
            return
        offset = 2
        for _ in range(count):
            length = struct.unpack_from(">H", payload, offset)[0]
            self.tokens.add(struct.unpack_from(">I", payload, offset + 2)[0])
            offset += 2 + length


async def _client(ws_root: str, api_key: str, tokens: list[int], mode: str, counter: FrameCounter,
                  stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{ws_root}?api_key={api_key}&access_token=token-{api_key}",
                                      max_msg_size=0, autoping=False) as ws:
            await ws.send_str(json.dumps({"a": "subscribe", "v": tokens}))
            await ws.send_str(json.dumps({"a": "mode", "v": [mode, tokens]}))
            while not stop.is_set():
                try:
                    msg = await asyncio.wait_for(ws.receive(), 0.5)
                except asyncio.TimeoutError:
                    continue
                if msg.type == aiohttp.WSMsgType.BINARY:
                    counter.add(msg.data)
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break


async def _measure(broker: PaperBroker, plan: dict[str, list[list[int]]], mode: str, seconds: float) -> dict:
    counter, stop = FrameCounter(), asyncio.Event()
    clients = [asyncio.create_task(_client(broker.ws_root, key, tokens, mode, counter, stop))
               for key, connections in plan.items() for tokens in connections]
    await asyncio.sleep(3.0)  # warm-up: subscriptions, first ticks of every instrument
    counter.tokens.clear()
    p0, f0, b0, s0 = counter.packets, counter.frames, counter.bytes, broker.state()["ticker"]["ticks_sent"]
    c0, t0, own0 = cpu_seconds(broker.pid), time.monotonic(), sum(os.times()[:2])
    await asyncio.sleep(seconds)
    p1, f1, b1, s1 = counter.packets, counter.frames, counter.bytes, broker.state()["ticker"]["ticks_sent"]
    c1, t1, own1 = cpu_seconds(broker.pid), time.monotonic(), sum(os.times()[:2])
    distinct = len(counter.tokens)
    stop.set()
    await asyncio.gather(*clients, return_exceptions=True)
    elapsed = t1 - t0
    return {"seconds": round(elapsed, 2), "ticks_per_s_sent": round((s1 - s0) / elapsed),
            "ticks_per_s_received": round((p1 - p0) / elapsed), "frames_per_s": round((f1 - f0) / elapsed, 1),
            "mbytes_per_s": round((b1 - b0) / elapsed / 1e6, 2), "distinct_instruments_ticking": distinct,
            "broker_cpu_percent": round(100 * (c1 - c0) / elapsed, 1),
            "client_cpu_percent": round(100 * (own1 - own0) / elapsed, 1)}


def run_raw(universe: str, accounts: int, connections: int, per_connection: int, target: float, seconds: float,
            mode: str) -> dict:
    started = time.monotonic()
    with PaperBroker(seed=1, tick_rate=1, universe=universe, startup_timeout=60) as broker:
        startup = time.monotonic() - started
        state = broker.state()
        response = requests.get(broker.root + "/instruments", timeout=60)
        tokens = [int(line.split(",", 1)[0]) for line in response.text.splitlines()[1:]]
        wanted = accounts * connections * per_connection
        chosen = np.random.default_rng(1).choice(tokens, size=min(wanted, len(tokens)), replace=False).tolist()
        plan: dict[str, list[list[int]]] = {}
        for a in range(accounts):
            key = f"bench{a}"
            broker.add_account(key, "secret", f"token-{key}")
            plan[key] = [chosen[(a * connections + c) * per_connection:(a * connections + c + 1) * per_connection]
                         for c in range(connections)]
        weights = 0.0   # the draw's weights average ~1; ask for exactly `target` with their sum
        for start in range(0, len(chosen), 500):
            found = broker.market(chosen[start:start + 500])["instruments"]
            weights += sum(v["tick_weight"] for v in found.values())
        rate = target / weights
        broker.settings(tick_rate=rate)
        result = asyncio.run(_measure(broker, plan, mode, seconds))
        return {"universe": universe, "instruments": state["universe"]["instruments"],
                "broker_startup_s": round(startup, 2), "mode": mode, "accounts": accounts,
                "connections": accounts * connections, "subscribed": len(chosen),
                "tick_rate_per_instrument": round(rate, 3), "target_ticks_per_s": target, **result,
                "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=None,
                        help="ticks/s asked of the broker in total (default 100,000; 150,000 with --accounts)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mode", choices=("ltp", "quote", "full"), default="quote")
    parser.add_argument("--universe", choices=("small", "fno"), default="small")
    parser.add_argument("--accounts", type=int, help="raw WebSocket clients for this many accounts")
    parser.add_argument("--connections", type=int, default=3, help="per account (Kite allows 3)")
    parser.add_argument("--per-connection", type=int, default=3000, help="instruments (Kite allows 3000)")
    args = parser.parse_args()
    if args.accounts:
        result = run_raw(args.universe, args.accounts, args.connections, args.per_connection,
                         args.target or 150_000, args.seconds, args.mode)
    elif args.universe != "small":
        parser.error("--universe fno needs --accounts (one KiteTicker connection holds 3000 instruments)")
    else:
        result = run(args.target or 100_000, args.seconds, args.mode)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
