"""Chain watchers at market scale (issue #22): `bench/ws_fanout.py --watch-chains` runs this.

    .venv/bin/python bench/ws_fanout.py --watch-chains [--clients 2000] [--chains 135] [--strikes 100]
        [--ticks-per-s 50000,20000,5000] [--web-workers 1] [--client-procs 2] [--seconds 10]
        [--client raw|aiohttp] [--no-redis-baseline]

- The web process runs as production runs it: `gunicorn -c gunicorn.conf.py -k gevent -w W wsgi:app`
  (`--web-workers 2`: two workers behind the same Redis, the scale-out figure).
- N clients (spread over `--client-procs` processes) open `/ws/ticks?chain=U:YYYY-MM-DD`, client i watching
  chain i % chains: each gets its chain's option messages and its underlying's. `--client raw` (default)
  reads frame headers and each message's head only (RawChainSocket), `--client aiohttp` decodes every
  message as an application would: on the relay's own two cores the latter's CPU delays what it measures.
- The market: `--chains` chains of 2 x `--strikes` options (45 underlyings x 3 expiries by default,
  27,000 options, plus each underlying's spot and future), FULL-mode rows (depth included) decoded by the
  stream's own decoder and batched by the stream's real TickBatcher (Greeks on every option tick) with the
  stream's TICK_BATCH_WINDOW_MS / TICK_BATCH_MAX_SIZE, fed as the pump feeds it: a frame every 10 ms
  carrying `ticks-per-s / 100` ticks of instruments picked at random. Two seconds of its batches are
  recorded first, then published to Redis on their schedule with a fresh `published_at`, so the
  publisher costs the machine little (`--live-batcher`: batch and publish as it goes).
- Per rate (each for `--seconds`): clients connected, messages/s and bytes/s per client, latency
  published_at -> client receipt (p50/p99/max), `dropped` frames and slow-client closes (code 1013),
  CPU of the web worker(s), the client processes and the publisher, RSS per socket, the machine's load.
Uses a private Redis server (launcher.embedded_redis) and a private PostgreSQL database like the tests.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ws_fanout import cpu_seconds, rss_kib, stop_all  # noqa: E402

FRAME_S = 0.01  # the pump receives a frame about every 10 ms per connection
LATENCY_SAMPLE = 50_000  # latencies each client process reports per rate (a uniform sample, plus the max)
_PUBLISHED_AT = re.compile(r'"published_at":"([^"]+)"')


# ---- the market -----------------------------------------------------------------------------------------
def chain_names(chains: int) -> list[str]:
    """`chains` chains: underlyings U00, U01, ... with three weekly expiries each."""
    first = date.today() + timedelta(days=(3 - date.today().weekday()) % 7 or 7)
    expiries = [first + timedelta(days=7 * k) for k in range(3)]
    return [f"U{i // 3:02d}:{expiries[i % 3].isoformat()}" for i in range(chains)]


def build_market(chains: int, strikes: int):
    """(InstrumentBook, decoded FULL rows of every instrument): `strikes` calls and puts per chain."""
    from tests.support.stream_frames import INDICES, NFO, frame, full_packet, quote_packet, token
    from workers.stream import frames
    from workers.stream.instruments import InstrumentBook, OptionMeta, UnderlyingTokens

    rng = random.Random(22)
    options, underlyings, packets = {}, {}, []
    next_token = iter(range(1, 10**6))
    for name_expiry in chain_names(chains):
        name, expiry = name_expiry.split(":")
        expiry = date.fromisoformat(expiry)
        spot = 1000 + 100 * int(name[1:])
        if name not in underlyings:
            index, future = token(next(next_token), INDICES), token(next(next_token), NFO)
            underlyings[name] = UnderlyingTokens(name, index, (future,), (expiry,))
            for tok, price in ((index, spot), (future, spot * 1.005)):
                packets.append(_full(quote_packet, full_packet, rng, tok, price))
        for k in range(strikes):
            strike = spot * (0.75 + 0.5 * k / strikes)
            for is_call in (True, False):
                tok = token(next(next_token), NFO)
                options[tok] = OptionMeta(tok, name, round(strike, 1), expiry, is_call, 50,
                                          f"{name}{expiry:%y%b}{int(strike)}{'CE' if is_call else 'PE'}".upper())
                intrinsic = max(0.0, (spot - strike) if is_call else (strike - spot))
                packets.append(_full(quote_packet, full_packet, rng, tok, intrinsic + 5 + rng.random() * 20))
    rows = frames.decode_frame(frame(packets))
    return InstrumentBook(options, underlyings), rows


def _full(quote_packet, full_packet, rng: random.Random, tok: int, price: float) -> bytes:
    paise = int(price * 100)
    quote = quote_packet(tok, paise, 50, paise, rng.randrange(10**6), 5000, 5000, paise, paise + 500,
                         max(5, paise - 500), paise)
    depth = [(rng.randrange(1, 2000), max(5, paise + (i - 5) * 5), rng.randrange(1, 30)) for i in range(10)]
    return full_packet(quote, int(time.time()), 10_000, 12_000, 9_000, int(time.time()), depth)


class Recorder:
    """A publisher that keeps what the batcher publishes (the messages of each flush)."""

    def __init__(self) -> None:
        self.flushes: list[list[tuple[str, str]]] = []

    def publish(self, messages, latest=None):
        from workers.stream.publisher import PublishResult

        self.flushes.append(list(messages.items() if isinstance(messages, dict) else messages))
        return PublishResult.PUBLISHED


class MarketFeed:
    """The stream's batches at a tick rate: recorded once from the real TickBatcher (Greeks included) fed as
    the pump feeds it, on a simulated clock, then replayed to Redis on time with a fresh `published_at`.
    Replaying keeps the publisher's CPU off the relay's two cores; `--live-batcher` batches as it goes."""

    def __init__(self, redis_url: str, chains: int, strikes: int, live: bool = False) -> None:
        import numpy as np
        import redis

        from app.core.config import get_settings

        settings = get_settings()
        self.book, self.rows = build_market(chains, strikes)
        self.window_ms, self.max_size = settings.tick_batch_window_ms, settings.tick_batch_max_size
        self.redis_url, self.live = redis_url, live
        self.redis = redis.Redis.from_url(redis_url)
        self.rng = np.random.default_rng(7)

    def _batcher(self, publisher, clock=time.monotonic, wall_clock=time.time):
        from workers.stream.batcher import TickBatcher
        from workers.stream.enrich import GreeksEnricher

        return TickBatcher(publisher, self.book, GreeksEnricher(), window_ms=self.window_ms, max_size=self.max_size,
                           clock=clock, wall_clock=wall_clock)

    def _frame(self, per_frame: int):
        picked = self.rows[self.rng.integers(0, len(self.rows), per_frame)].copy()
        picked["last_price"] *= 1 + self.rng.normal(0, 0.001, per_frame)  # prices move: Greeks change
        return picked

    def record(self, ticks_per_s: float, cycle_s: float = 2.0) -> list[tuple[float, list[tuple[str, str]], int]]:
        """`cycle_s` of flushes: (time into the cycle, its messages, its ticks) each."""
        now = [0.0]
        recorder = Recorder()
        batcher = self._batcher(recorder, clock=lambda: now[0], wall_clock=lambda: 1e9 + now[0])
        per_frame = max(1, round(ticks_per_s * FRAME_S))
        cycle, frames_sent = [], 0
        while now[0] < cycle_s:
            for report in (batcher.add(self._frame(per_frame)), batcher.flush_if_due()):
                if report is not None:
                    cycle.append((now[0], recorder.flushes[-1], report.ticks))
            frames_sent += 1
            now[0] = frames_sent * FRAME_S
        return cycle

    def run(self, ticks_per_s: float, seconds: float) -> dict:
        """Publish for `seconds`; the ticks fed, and the messages and ticks published."""
        if self.live:
            return self._run_live(ticks_per_s, seconds)
        cycle = self.record(ticks_per_s)
        cycle_s = max(2.0, cycle[-1][0] + FRAME_S) if cycle else 2.0
        messages = published = 0
        start = time.monotonic()
        for lap in range(int(seconds / cycle_s) + 1):
            for offset, flush, ticks in cycle:
                due = start + lap * cycle_s + offset
                if due - start >= seconds:
                    break
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                stamp = f'"published_at":"{_iso(time.time())}"'
                pipe = self.redis.pipeline(transaction=False)
                for channel, text in flush:
                    head_end = text.index('"ticks":')
                    pipe.publish(channel, _PUBLISHED_AT.sub(stamp, text[:head_end], 1) + text[head_end:])
                pipe.execute()
                messages, published = messages + len(flush), published + ticks
        elapsed = time.monotonic() - start
        return {"fed": ticks_per_s * elapsed, "published": published, "messages": messages, "seconds": elapsed}

    def _run_live(self, ticks_per_s: float, seconds: float) -> dict:
        from workers.stream.publisher import RedisPublisher

        batcher = self._batcher(RedisPublisher.from_url(self.redis_url, latest_key="bench:chains:latest"))
        per_frame = max(1, round(ticks_per_s * FRAME_S))
        fed = messages = published = frames_sent = 0
        start = time.monotonic()
        while (now := time.monotonic()) - start < seconds:
            due = start + frames_sent * FRAME_S
            if due > now:
                time.sleep(due - now)
            for report in (batcher.add(self._frame(per_frame)), batcher.flush_if_due()):
                if report is not None:
                    published, messages = published + report.ticks, messages + _message_count(report)
            fed += per_frame
            frames_sent += 1
        report = batcher.flush()
        if report is not None:
            published, messages = published + report.ticks, messages + _message_count(report)
        return {"fed": fed, "published": published, "messages": messages, "seconds": time.monotonic() - start}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message_count(report) -> int:
    """One message per chain, and one per other channel."""
    return len(report.chains) + sum(1 for channel in report.channels if not channel.endswith(":options"))


# ---- the client processes -------------------------------------------------------------------------------
async def run_chain_clients(url: str, key: str, chains: list[str], redis_url: str | None, kind: str = "raw") -> None:
    """One socket per chain in `chains` (`kind`: "raw", RawChainSocket, or "aiohttp"); on each `MARK` line of
    stdin, print this phase's figures and reset. With `redis_url`, also a plain pattern subscriber on
    ticker:* (published_at -> receipt without the relay)."""
    import aiohttp
    import redis
    import redis.asyncio

    stats = _fresh_stats()
    connected = closed = 0
    close_codes: dict[int, int] = {}
    async def one(chain: str, session: aiohttp.ClientSession) -> None:
        nonlocal connected, closed
        try:
            async with session.ws_connect(f"{url}/ws/ticks?chain={chain}", headers={"X-API-Key": key},
                                          heartbeat=None, autoping=True, max_msg_size=0) as ws:
                first = await ws.receive_json()
                assert first["type"] == "subscribed", first
                connected += 1
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    now, data = time.time(), message.data
                    if data.startswith('{"type":"ticks"'):
                        found = _PUBLISHED_AT.search(data, 0, 400)
                        stats["messages"] += 1
                        stats["bytes"] += len(data)
                        if found:
                            latency = now - _epoch(found.group(1))
                            stats["max"] = max(stats["max"], latency)
                            stats["latencies"].append(latency)
                    elif data.startswith('{"type": "dropped"') or data.startswith('{"type":"dropped"'):
                        stats["dropped"] += json.loads(data)["count"]
                code = ws.close_code or 0
                close_codes[code] = close_codes.get(code, 0) + 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stats["errors"] += 1
            if stats["errors"] <= 3:
                print(f"client error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        closed += 1

    async def baseline() -> None:
        while True:  # Redis closes a subscriber that falls too far behind: subscribe again
            try:
                pubsub = redis.asyncio.Redis.from_url(redis_url, protocol=2).pubsub(ignore_subscribe_messages=True)
                await pubsub.psubscribe("ticker:*")
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        found = _PUBLISHED_AT.search(message["data"][:400].decode())
                        if found:
                            stats["redis"].append(time.time() - _epoch(found.group(1)))
            except (OSError, redis.RedisError):
                stats["redis_reconnects"] += 1
                await asyncio.sleep(0.2)

    loop = asyncio.get_running_loop()
    if redis_url:
        plain = asyncio.create_task(baseline())
    def subscribed() -> None:
        nonlocal connected
        connected += 1

    def ended(sock: RawChainSocket) -> None:
        nonlocal closed
        closed += 1
        code = sock.close_code or 0
        close_codes[code] = close_codes.get(code, 0) + 1

    async def raw(chain: str) -> None:
        host, port = url.split("//", 1)[1].split(":")
        try:
            await loop.create_connection(
                lambda: RawChainSocket(f"{host}:{port}", f"/ws/ticks?chain={chain}", key, lambda: stats, subscribed,
                                       ended), host, int(port))
        except OSError as exc:
            stats["errors"] += 1
            print(f"client error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        for i, chain in enumerate(chains):
            tasks.append(asyncio.create_task(raw(chain) if kind == "raw" else one(chain, session)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # connect in waves, as clients arrive in life
        deadline = time.monotonic() + 120
        while connected + stats["errors"] < len(chains) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # As the web worker does (gunicorn.conf.py): the default thresholds pause this process's event loop
        # for ~100 ms at a time with 1,000 sockets, and the pauses would count as the relay's latency.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        print(f"READY {connected}", flush=True)
        mark = time.monotonic()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() == "QUIT":
                break
            now = time.monotonic()
            latencies = stats["latencies"]
            sample = random.sample(latencies, LATENCY_SAMPLE) if len(latencies) > LATENCY_SAMPLE else latencies
            print("RESULT " + json.dumps({
                "connected": connected, "open": connected - closed, "seconds": now - mark,
                "messages": stats["messages"], "bytes": stats["bytes"], "dropped": stats["dropped"],
                "errors": stats["errors"], "close_codes": close_codes, "max": stats["max"],
                "latencies": sample, "latency_count": len(latencies), "redis_latencies": stats["redis"],
                "redis_reconnects": stats["redis_reconnects"]}),
                flush=True)
            stats, mark = _fresh_stats(errors=stats["errors"]), now
        if redis_url:
            tasks.append(plain)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class RawChainSocket(asyncio.Protocol):
    """A WebSocket client that reads only what the bench measures (`--client raw`, the default).

    aiohttp decodes every frame into a message object and its text (~30 µs a frame here); with 2,000
    sockets on the relay's own two cores the clients then delay what they measure (the plain Redis
    subscriber beside them fell seconds behind at 50,000 ticks/s). This one checks the handshake
    (101 and Sec-WebSocket-Accept), walks the frame headers, reads `published_at` from the head of
    each ticks message, answers pings and records the close code.
    """

    def __init__(self, host: str, path: str, key: str, stats, on_subscribed, on_closed) -> None:
        self.request_key = base64.b64encode(os.urandom(16)).decode()
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {self.request_key}\r\nSec-WebSocket-Version: 13\r\n"
                        f"X-API-Key: {key}\r\n\r\n").encode()
        self.stats, self.on_subscribed, self.on_closed = stats, on_subscribed, on_closed  # stats(): this phase's
        self.buffer = bytearray()
        self.upgraded = self.subscribed = False
        self.close_code: int | None = None
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        self.on_closed(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status, *lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
            accept = base64.b64encode(hashlib.sha1((self.request_key + WS_GUID).encode()).digest()).decode()
            if not status.startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != accept:
                self.stats()["errors"] += 1
                print(f"client error: handshake refused: {status}", file=sys.stderr, flush=True)
                self.transport.close()
                return
            self.upgraded = True
            del buffer[:end + 4]
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            opcode, length, at = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F, pos + 2
            if length == 126:
                if size - at < 2:
                    break
                length, at = int.from_bytes(buffer[at:at + 2], "big"), at + 2
            elif length == 127:
                if size - at < 8:
                    break
                length, at = int.from_bytes(buffer[at:at + 8], "big"), at + 8
            if size - at < length:
                break
            self._frame(opcode, buffer, at, length)
            pos = at + length
        if pos:
            del buffer[:pos]

    def _frame(self, opcode: int, buffer: bytearray, at: int, length: int) -> None:
        now = time.time()
        stats = self.stats()
        if opcode == 1:
            head = bytes(buffer[at:at + min(length, 400)])
            if head.startswith(b'{"type":"ticks"'):
                stats["messages"] += 1
                stats["bytes"] += length
                found = _PUBLISHED_AT_BYTES.search(head)
                if found:
                    latency = now - _epoch(found.group(1).decode())
                    stats["max"] = max(stats["max"], latency)
                    stats["latencies"].append(latency)
            elif b'"type": "dropped"' in head or b'"type":"dropped"' in head:
                stats["dropped"] += json.loads(bytes(buffer[at:at + length]))["count"]
            elif not self.subscribed and b'"subscribed"' in head:
                self.subscribed = True
                self.on_subscribed()
        elif opcode == 9:  # ping: a masked pong with the same payload
            payload = bytes(buffer[at:at + length])
            mask = os.urandom(4)
            self.transport.write(bytes((0x8A, 0x80 | length)) + mask
                                 + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        elif opcode == 8:
            self.close_code = int.from_bytes(buffer[at:at + 2], "big") if length >= 2 else 1005
            self.transport.close()


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_PUBLISHED_AT_BYTES = re.compile(rb'"published_at":"([^"]+)"')
_EPOCHS: dict[str, float] = {}


def _epoch(text: str) -> float:
    at = _EPOCHS.get(text)
    if at is None:
        if len(_EPOCHS) > 10_000:
            _EPOCHS.clear()
        at = _EPOCHS[text] = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return at


def _fresh_stats(errors: int = 0) -> dict:
    return {"messages": 0, "bytes": 0, "dropped": 0, "errors": errors, "max": 0.0, "latencies": [], "redis": [],
            "redis_reconnects": 0}


# ---- the orchestrator -------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="chain watchers at market scale")
    parser.add_argument("--watch-chains", action="store_true")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--chains", type=int, default=135)
    parser.add_argument("--strikes", type=int, default=100, help="strikes per chain (a call and a put each)")
    parser.add_argument("--ticks-per-s", default="50000",
                        help="option ticks/s fed to the stream's batcher; a comma-separated list runs each in turn")
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="the clients' WebSocket code: raw (reads frame headers and each message's head only) "
                             "or aiohttp (decodes every message)")
    parser.add_argument("--no-redis-baseline", action="store_true",
                        help="no plain Redis subscriber beside the clients (at 50,000 ticks/s it parses ~45 MB/s "
                             "on the same cores)")
    parser.add_argument("--chain-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--watch", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--live-batcher", action="store_true",
                        help="batch with the real TickBatcher while publishing (its CPU then shares the machine) "
                             "instead of replaying batches it recorded beforehand")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.chain_client:
        asyncio.run(run_chain_clients(args.url, args.key, [c for c in args.watch.split(",") if c], args.redis_url,
                                      args.client))
        return
    rates = [float(r) for r in args.ticks_per_s.split(",")]

    from tests.support.environment import API_KEYS, configure_test_environment
    from tests.support.processes import GunicornServer

    # A private Redis server: pub/sub channels are global across a server's DBs, so on a shared server
    # other runs' `ticker:*` traffic would mix into ours (and ours flood their subscribers).
    from launcher.embedded_redis import EmbeddedRedis

    private_redis = EmbeddedRedis().start()
    os.environ["REDIS_URL"] = private_redis.url
    try:
        env = configure_test_environment()  # a private database; sets the env vars
    except BaseException:
        private_redis.stop()
        raise
    processes: list = []
    try:
        from alembic import command

        from app.cli import alembic_config

        command.upgrade(alembic_config(), "head")
        feed = MarketFeed(env.redis_url, args.chains, args.strikes, live=args.live_batcher)
        names = chain_names(args.chains)
        web = GunicornServer(workers=args.web_workers, extra_args=["-k", "gevent", "-w", str(args.web_workers)],
                             env={"LOG_LEVEL": "WARNING", "WEB_WORKER_CONNECTIONS": str(args.clients + 500)})
        processes.append(web)
        web.start(timeout=60)
        time.sleep(1.0)
        workers = web.children() or [web.pid]
        rss_empty = sum(rss_kib(w) for w in workers)

        clients = []
        connect_started = time.monotonic()
        # Client processes, and the plain Redis subscriber in a process of its own (at 50,000 ticks/s it
        # parses ~45 MB/s: beside a client process's sockets it would hold up what they measure).
        watch_lists = [[names[i % len(names)] for i in range(p, args.clients, args.client_procs)]
                       for p in range(args.client_procs)] + ([] if args.no_redis_baseline else [[]])
        for p, mine in enumerate(watch_lists):
            baseline = p == args.client_procs
            proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "ws_chains.py"), "--chain-client",
                                     "--url", web.url.replace("http", "ws", 1), "--key", API_KEYS["admin"],
                                     "--client", args.client, "--watch", ",".join(mine),
                                     *(["--redis-url", env.redis_url] if baseline else [])],
                                    cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            processes.append(proc)
            clients.append(proc)
        connected = 0
        for proc in clients:
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"clients failed: {line!r}")
            connected += int(line.split()[1])
        connect_s = time.monotonic() - connect_started
        time.sleep(1.0)
        rss_idle = sum(rss_kib(w) for w in workers)
        per_socket = 1 / max(1, connected)
        print(f"web: gunicorn -k gevent -w {args.web_workers} (pids {workers}); clients ({args.client}): {connected}/{args.clients} "
              f"connected in {connect_s:.1f}s over {args.client_procs} processes, watching {len(names)} chains of "
              f"{2 * args.strikes} options ({args.clients / len(names):.1f} watchers per chain); batcher window "
              f"{feed.window_ms} ms, max size {feed.max_size}")
        print(f"web memory: {rss_empty / 1024:.0f} MiB before the clients, {rss_idle / 1024:.0f} MiB with them idle "
              f"({(rss_idle - rss_empty) * per_socket:.0f} KiB per socket)")

        for rate in rates:
            _mark(clients)  # a fresh phase
            cpu = {pid: cpu_seconds(pid) for pid in [*workers, *(c.pid for c in clients), os.getpid()]}
            wall = time.monotonic()
            fed = feed.run(rate, args.seconds)
            time.sleep(1.0)  # let the last messages land
            wall = time.monotonic() - wall
            used = {pid: cpu_seconds(pid) - before for pid, before in cpu.items()}
            results = _mark(clients)
            _report(rate, fed, results, used, wall, workers, [c.pid for c in clients[:args.client_procs]],
                    [c.pid for c in clients[args.client_procs:]], connected)
            _relay_status(web.url, API_KEYS["admin"])
            time.sleep(2.0)  # a backlog left by this rate is not counted in the next
        rss_after = sum(rss_kib(w) for w in workers)
        print(f"web memory after the runs: {rss_after / 1024:.0f} MiB ({(rss_after - rss_empty) * per_socket:.0f} KiB "
              f"per socket); load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        for proc in clients:
            proc.stdin.write("QUIT\n")
            proc.stdin.flush()
    finally:
        stop_all(processes, exit_wait_s=5.0, term_wait_s=10.0)  # the clients were told QUIT: let them report
        env.close()
        private_redis.stop()


def _mark(clients: list[subprocess.Popen]) -> list[dict]:
    for proc in clients:
        proc.stdin.write("MARK\n")
        proc.stdin.flush()
    results = []
    for proc in clients:
        while not (line := proc.stdout.readline()).startswith("RESULT "):
            if not line:
                raise RuntimeError("a client process ended")
        results.append(json.loads(line[7:]))
    return results


def _relay_status(url: str, key: str) -> None:
    import requests

    body = requests.get(f"{url}/ws/status", headers={"X-API-Key": key}, timeout=10).json()
    print(f"relay (/ws/status of pid {body['pid']}, since it started): Redis reconnects {body['redis']['reconnects']}, "
          f"slow clients closed {body['slow_clients_disconnected']}, tick batches dropped "
          f"{body['tick_batches_dropped']}, {body['tick_subscriptions']}")


def _report(rate: float, fed: dict, results: list[dict], used: dict[int, float], wall: float,
            workers: list[int], client_pids: list[int], baseline_pids: list[int], connected: int) -> None:
    latencies = sorted(x for r in results for x in r["latencies"])
    redis_latencies = sorted(x for r in results for x in r["redis_latencies"])
    worst = max((r["max"] for r in results), default=0.0)

    def pct(p: float, values: list[float] = latencies) -> str:
        return f"{values[min(len(values) - 1, int(p * len(values)))] * 1000:.1f}" if values else "-"

    messages, received = sum(r["messages"] for r in results), sum(r["bytes"] for r in results)
    seconds = max(r["seconds"] for r in results)
    codes: dict[str, int] = {}
    for r in results:
        for code, n in r["close_codes"].items():
            codes[code] = codes.get(code, 0) + n
    still_open = sum(r["open"] for r in results)
    per_client = 1 / max(1, still_open) / seconds
    web_cpu = sum(used[w] for w in workers) / wall
    client_cpu = sum(used[c] for c in client_pids) / wall
    print(f"\n--- {rate:,.0f} option ticks/s fed ---")
    print(f"published: {fed['published'] / fed['seconds']:,.0f} ticks/s (newest per token per batch) in "
          f"{fed['messages'] / fed['seconds']:,.0f} messages/s; fed {fed['fed'] / fed['seconds']:,.0f} ticks/s")
    print(f"clients: {still_open}/{connected} open; per client {messages * per_client:,.1f} messages/s, "
          f"{received * per_client / 1024:,.0f} KiB/s; all clients {messages / seconds:,.0f} messages/s, "
          f"{received / seconds / 2**20:,.1f} MiB/s")
    print(f"latency published_at -> client receipt: p50 {pct(0.50)} ms, p99 {pct(0.99)} ms, max {worst * 1000:.1f} ms "
          f"(target p99 <= 100 ms); a plain Redis subscriber: p50 {pct(0.5, redis_latencies)} ms, "
          f"p99 {pct(0.99, redis_latencies)} ms ({sum(r['redis_reconnects'] for r in results)} reconnects)")
    print(f"dropped frames (told to clients): {sum(r['dropped'] for r in results)}; closes by code: {codes or 'none'}; "
          f"client errors {sum(r['errors'] for r in results)}")
    print(f"CPU (share of one core): web {100 * web_cpu:.0f}% ({len(workers)} worker(s)), "
          f"clients {100 * client_cpu:.0f}% "
          f"({len(client_pids)} processes), plain Redis subscriber {100 * sum(used[b] for b in baseline_pids) / wall:.0f}%, "
          f"publisher {100 * used[os.getpid()] / wall:.0f}%; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
