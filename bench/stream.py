"""Streaming worker under rising tick rates: throughput with Greeks, CPU, broker-send → subscriber latency.

    .venv/bin/python bench/stream.py [--rates 10000,25000,50000,100000,150000] [--seconds 8] [--quick]
                                     [--py-spy-seconds N]
    .venv/bin/python bench/stream.py --universe fno [--accounts 3] [--instruments 27000] [--streams 1|2]
                                     [--rates 100000,150000] [--window-ms 100] [--max-size N]

Small universe (default): one `python -m workers.stream` subprocess (as the Procfile runs it)
streams every paper-broker instrument (~650) in FULL mode on one account / one connection.
`--universe fno` (the whole F&O market, ~90,000 instruments): `--accounts` accounts (3: Kite's
3 connections x 3,000 instruments each, 27,000 in all) stream the `--instruments` most liquid
ones — every spot and future, then the options nearest the money — in FULL mode, each
instrument ticking at its own rate (near-the-money more often); `--streams 2` runs two stream
processes that share the accounts through their leases (the platform's way to scale out).
For each offered rate the broker's per-instrument `tick_rate` is set to rate / instruments
(a mean: the broker's liquidity weights make the subscribed near-the-money set tick faster, so
`sent/s` is the figure to read), the stream gets a short warm-up, then for `--seconds`:

- sent/s       ticks the broker actually wrote (`/_sim/state` ticks_sent delta)
- received/s   ticks the stream decoded (`stream_ticks_received_total`, scraped from
               its STREAM_METRICS_PORT)
- published/s  ticks in the Redis messages a `ticker:*` subscriber received. Each
               flush keeps only the newest tick per token, so published ≤ received;
               IV and Greeks are computed for every option tick that is published
               (greeks/s counts option ticks whose `greeks.iv` is a number).
- dropped      `stream_ticks_dropped_total` delta (queue_full / breaker_open / redis_error)
- CPU %        utime+stime deltas from /proc/PID/stat (100 % = one core) of the stream,
               the broker, this process (the subscriber) and the benchmark's private Redis
               (an embedded valkey: pub/sub is global across a server's DBs, so a shared
               server would mix other runs' ticks into the counts)
- latency      broker send → subscriber receive, from the paper broker's `--stamp-token`
               marker: one ATM NIFTY option whose last_quantity carries the send time of
               its frame (epoch ms mod 2^32); every message with the marker gives one
               sample. It is the age of the tick a client gets, which is what the
               newest-per-token batching bounds by the window.
- t→pub        the stream's own `stream_tick_to_publish_seconds` (frame arrival → publish,
               every frame, including ticks superseded within their window), p50/p99
               interpolated from the histogram buckets.

- distinct     instruments published in the phase (`ticks:latest` is emptied at its start and
               counted at its end: the stream writes every tick it publishes there)
               (the published batches must represent every subscribed instrument)

Targets (issue "Streaming worker", 2-core machine): ≥ 100,000 ticks/s sustained with
Greeks; at 50,000 ticks/s p99 latency ≤ TICK_BATCH_WINDOW_MS + 20 ms.
Targets at market scale (issue "The whole F&O market", `--universe fno`): ≥ 100,000 distinct
ticks/s received, ≥ 50,000 ticks/s published with Greeks, p99 ≤ TICK_BATCH_WINDOW_MS + 30 ms.
"Sustained" here: the stream decodes what the broker sends (received ≥ 97 % of sent),
drops nothing, and latency stays bounded (p99 < 1 s).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import requests  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.support.environment import configure_test_environment, use_paper_broker  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import StreamProcess  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ACCOUNT = {"api_key": "bench-stream", "api_secret": "bench-secret", "access_token": "bench-token"}
DEFAULT_RATES = (10_000, 25_000, 50_000, 100_000, 150_000)
SUSTAINED_FRACTION = 0.97


# ---- helpers -------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style quantile from cumulative (le, count) pairs (deltas over a phase)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            span = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / span if span else 1.0)
        prev_le, prev_count = le, count
    return prev_le


class Metrics:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/metrics"

    def scrape(self) -> dict:
        text = requests.get(self.url, timeout=5).text
        out = {"received": 0.0, "published": Counter(), "dropped": Counter(), "t2p": [], "t2p_sum": 0.0,
               "t2p_count": 0.0, "enrich_sum": 0.0, "enrich_count": 0.0, "batches": 0.0}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "stream_ticks_received_total":
                    out["received"] += s.value
                elif s.name == "stream_ticks_published_total":
                    out["published"][s.labels.get("kind", "")] += s.value
                elif s.name == "stream_ticks_dropped_total":
                    out["dropped"][s.labels.get("reason", "")] += s.value
                elif s.name == "stream_tick_to_publish_seconds_bucket":
                    out["t2p"].append((float(s.labels["le"]), s.value))
                elif s.name == "stream_tick_to_publish_seconds_sum":
                    out["t2p_sum"] = s.value
                elif s.name == "stream_tick_to_publish_seconds_count":
                    out["t2p_count"] = s.value
                elif s.name == "stream_enrich_seconds_sum":
                    out["enrich_sum"] = s.value
                elif s.name == "stream_enrich_seconds_count":
                    out["enrich_count"] = s.value
                elif s.name == "stream_batch_size_ticks_count":
                    out["batches"] = s.value
        out["t2p"].sort()
        return out


# ---- the Redis subscriber -----------------------------------------------------------------------
_COUNT = re.compile(rb'"count":(\d+)')
_PUBLISHED_AT = re.compile(rb'"published_at":"([^"]+)"')
_LTQ = re.compile(rb'"last_traded_quantity":(\d+)')


class SummedMetrics:
    """The metrics of several stream processes, added up (histogram buckets too)."""

    def __init__(self, ports: list[int]):
        self.parts = [Metrics(port) for port in ports]

    def scrape(self) -> dict:
        scraped = [m.scrape() for m in self.parts]
        total = scraped[0]
        for other in scraped[1:]:
            for key in ("received", "t2p_sum", "t2p_count", "enrich_sum", "enrich_count", "batches"):
                total[key] += other[key]
            total["published"] += other["published"]
            total["dropped"] += other["dropped"]
            counts = dict(total["t2p"])
            total["t2p"] = sorted((le, counts.get(le, 0.0) + c) for le, c in other["t2p"])
        return total


class Subscriber(threading.Thread):
    """psubscribe ticker:* and count ticks without parsing whole messages (they are large).

    Counts: ticks per message from the header's `count`, option ticks with a numeric IV
    by substring counts, and the marker's stamp → receive latency.
    """

    def __init__(self, redis_url: str, marker: int):
        super().__init__(name="bench-subscriber", daemon=True)
        # RESP2: redis-py 8's RESP3 parser formats every pub/sub message for a debug log
        self.client = redis.Redis.from_url(redis_url, protocol=2)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("ticker:*")
        self.marker_key = b'"instrument_token":%d,' % marker
        self.lock = threading.Lock()
        self._halt = threading.Event()
        self.marker_sample: dict | None = None
        self.reset()

    def reset(self) -> dict:
        """Start a new measuring phase; returns the finished one."""
        fresh = {"messages": 0, "ticks": 0, "options": 0, "greeks": 0, "latency_ms": [], "hop_ms": [],
                 "marker_missing_greeks": 0}
        with self.lock:
            old, self.stats = getattr(self, "stats", None), fresh
        return old

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                message = self.pubsub.get_message(timeout=0.2)
            except Exception:
                if self._halt.is_set():
                    return
                raise
            if not message or message["type"] != "pmessage":
                continue
            received = time.time()
            data: bytes = message["data"]
            head = data[:400]
            count = int(_COUNT.search(head).group(1))
            is_options = message["channel"].endswith(b":options")
            greeks = 0
            if is_options:
                greeks = data.count(b'"greeks":{"iv":') - data.count(b'"greeks":{"iv":null')
            latency = hop = None
            at = data.find(self.marker_key)
            if at >= 0:
                match = _LTQ.search(data, at, at + 400)
                if match:
                    now_ms = int(received * 1000)
                    latency = ((now_ms - int(match.group(1))) % (1 << 32))
                    # the fractional ms of the receive time matters at these scales
                    latency += received * 1000 - now_ms
                published = _PUBLISHED_AT.search(head)
                if published:
                    from datetime import datetime
                    stamp = datetime.fromisoformat(published.group(1).decode().replace("Z", "+00:00"))
                    hop = (received - stamp.timestamp()) * 1000
                if self.marker_sample is None:  # one full marker tick, to show what a client gets
                    for tick in json.loads(data)["ticks"]:
                        if tick["instrument_token"] == int(self.marker_key[19:-1]):
                            self.marker_sample = tick
                end = data.find(b"}", data.find(b'"greeks":', at))  # the greeks object is flat
                missing = b'"iv":null' in data[at:end] if end > 0 else True
            with self.lock:
                st = self.stats
                st["messages"] += 1
                st["ticks"] += count
                if is_options:
                    st["options"] += count
                    st["greeks"] += greeks
                if latency is not None:
                    st["latency_ms"].append(latency)
                    if missing:
                        st["marker_missing_greeks"] += 1
                if hop is not None:
                    st["hop_ms"].append(hop)

    def stop(self) -> None:
        self._halt.set()
        self.join(3)
        try:
            self.pubsub.close()
            self.client.close()
        except Exception:
            pass


# ---- set-up -------------------------------------------------------------------------------------
def pick_marker(root: str) -> int:
    """An at-the-money NIFTY call of the nearest expiry: its Greeks are always computable."""
    from kiteconnect import KiteConnect

    kite = KiteConnect("probe", access_token="probe", root=root)
    spot = kite.ltp("NSE:NIFTY 50")["NSE:NIFTY 50"]["last_price"]
    calls = [i for i in kite.instruments("NFO") if i["segment"] == "NFO-OPT" and i["name"] == "NIFTY"
             and i["instrument_type"] == "CE"]
    expiry = min(i["expiry"] for i in calls)
    return min((i for i in calls if i["expiry"] == expiry), key=lambda i: abs(i["strike"] - spot))["instrument_token"]


def choose_instruments(instruments, marker: int, count: int | None) -> list[int]:
    """What the benchmark subscribes: everything (count None), or the `count` most liquid instruments —
    every spot and future, then options nearest the money (the chain's middle strike stands for the
    money: the broker lists strikes evenly around the spot), nearer expiries first on ties. Always the marker."""
    if count is None:
        return [i.instrument_token for i in instruments]
    options = [i for i in instruments if i.is_option]
    rest = [i.instrument_token for i in instruments if not i.is_option]
    strikes: dict[tuple, list[float]] = {}
    for o in options:
        strikes.setdefault((o.name, o.expiry), []).append(o.strike)
    middle = {key: sorted(values)[len(values) // 2] for key, values in strikes.items()}
    expiry_rank = {e: k for k, e in enumerate(sorted({o.expiry for o in options}))}
    options.sort(key=lambda o: (round(abs(o.strike / middle[(o.name, o.expiry)] - 1), 3), expiry_rank[o.expiry],
                                o.instrument_token))
    chosen = rest[:count] + [o.instrument_token for o in options[:max(0, count - len(rest))]]
    if marker not in chosen:
        chosen[-1] = marker
    return chosen


def py_spy_summary(pid: int, seconds: float, out_dir: Path) -> str:
    """Record the stream with py-spy (if installed) and summarise self and inclusive time."""
    exe = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(exe).exists():
        return "py-spy not installed (.venv/bin/pip install py-spy); no profile"
    out = out_dir / "stream.collapsed"
    proc = subprocess.run([exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                           "--format", "raw", "--threads", "--output", str(out), "--nonblocking"],
                          capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0 or not out.exists():
        return f"py-spy failed: {proc.stderr.strip()[-500:]}"
    own, inclusive, total, per_thread = Counter(), Counter(), 0, Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        n = int(n)
        frames = stack.split(";")
        total += n
        per_thread[frames[0]] += n
        own[_frame_name(frames[-1])] += n
        for name in {_frame_name(f) for f in frames[1:]}:
            inclusive[name] += n
    lines = [f"py-spy: {total} samples over {seconds:.0f} s at 200 Hz (idle threads excluded); collapsed stacks: {out}",
             "  per thread: " + ", ".join(f"{t} {100 * n / total:.0f}%" for t, n in per_thread.most_common(6)),
             "  self time (top 15):"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(15)]
    lines.append("  inclusive (top 20):")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(20)]
    return "\n".join(lines)


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number
    return re.sub(r":\d+\)$", ")", frame.replace(str(ROOT) + "/", ""))


# ---- the run ------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                        help="offered ticks/s in total, comma-separated (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per rate")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds at a new rate before measuring")
    parser.add_argument("--window-ms", type=int, default=100, help="TICK_BATCH_WINDOW_MS of the stream")
    parser.add_argument("--max-size", type=int, default=None,
                        help="TICK_BATCH_MAX_SIZE of the stream (default: the stream's own, 30000)")
    parser.add_argument("--quick", action="store_true", help="rates 10k,50k,100k, 3 s each")
    parser.add_argument("--py-spy-seconds", type=float, default=0,
                        help="profile the stream with py-spy for N s at the highest rate (after the table)")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--universe", choices=("small", "fno"), default="small",
                        help="the paper broker's market: small (NIFTY and BANKNIFTY, ~650 instruments) or fno "
                             "(the whole F&O segment, ~90,000)")
    parser.add_argument("--accounts", type=int, default=None,
                        help="streaming accounts (default: 1 for small, 3 for fno)")
    parser.add_argument("--instruments", type=int, default=None,
                        help="instruments subscribed (default: all ~650 for small; for fno 9,000 per account, "
                             "the most liquid: spots, futures, then options nearest the money)")
    parser.add_argument("--streams", type=int, default=1, help="stream processes sharing the accounts (leases)")
    args = parser.parse_args()
    fno = args.universe == "fno"
    if args.accounts is None:
        args.accounts = 3 if fno else 1
    if args.rates == ",".join(map(str, DEFAULT_RATES)) and fno and not args.quick:
        args.rates = "100000,150000"
    rates = [10_000, 50_000, 100_000] if args.quick else [int(float(r)) for r in args.rates.split(",")]
    seconds = 3.0 if args.quick else args.seconds
    warmup = 1.0 if args.quick else args.warmup

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    # A private Redis server: pub/sub channels are global across a server's DBs, so on a shared
    # server other runs' `ticker:*` messages (same paper-broker tokens) would mix into ours.
    from launcher.embedded_redis import EmbeddedRedis
    private_redis = EmbeddedRedis().start()
    os.environ["REDIS_URL"] = private_redis.url
    try:
        environment = configure_test_environment()
    except BaseException:
        private_redis.stop()
        raise
    os.environ["LOG_LEVEL"] = "WARNING"
    broker = subscriber = None
    streams: list = []
    try:
        from alembic import command
        from sqlalchemy import delete, insert

        from app import accounts as account_service
        from app.cli import alembic_config
        from app.core.db import session_scope
        from app.market.instruments import registry
        from app.models import Subscription
        from sim.harness import PaperBroker

        command.upgrade(alembic_config(), "head")
        seed = 3
        universe_args = ["--universe", args.universe] if fno else []
        started = time.monotonic()
        with PaperBroker(seed=seed, frozen=True, extra_args=universe_args,
                         startup_timeout=120) as probe:  # same seed → same instruments
            marker = pick_marker(probe.root)
        accounts = [ACCOUNT] if args.accounts == 1 else [
            {"api_key": f"bench-stream-{k}", "api_secret": f"bench-secret-{k}", "access_token": f"bench-token-{k}"}
            for k in range(1, args.accounts + 1)]
        broker = PaperBroker(seed=seed, tick_rate=1, rate_limits=False, startup_timeout=120,
                             accounts={a["api_key"]: (a["api_secret"], a["access_token"]) for a in accounts},
                             extra_args=["--stamp-token", str(marker), *universe_args]).start()
        use_paper_broker(broker)
        with session_scope() as session:
            for k, account in enumerate(accounts):
                account_service.add_account(session, "bench" if len(accounts) == 1 else f"bench-{k + 1}", **account)
        from workers.tasks.maintenance import refresh_instruments
        refresh_instruments.run()
        tokens = choose_instruments(registry().all(), marker,
                                    args.instruments or (9000 * args.accounts if fno else None))
        with session_scope() as session:
            session.execute(delete(Subscription))
            session.execute(insert(Subscription), [{"instrument_token": t, "requested_mode": "FULL"} for t in tokens])
        n = len(tokens)
        print(f"set-up: {len(registry().all()):,} instruments listed, {n:,} subscribed, "
              f"{time.monotonic() - started:.0f} s", flush=True)

        metrics_ports = [free_port() for _ in range(args.streams)]
        streams = []
        for k, port in enumerate(metrics_ports):
            stream_env = dict(os.environ, STREAM_METRICS_PORT=str(port), STREAM_METRICS_HOST="127.0.0.1",
                              TICK_BATCH_WINDOW_MS=str(args.window_ms), LOG_LEVEL="WARNING",
                              **({"TICK_BATCH_MAX_SIZE": str(args.max_size)} if args.max_size else {}),
                              PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
            streams.append(StreamProcess(env=stream_env, log_path=work / f"stream-{k}.log").start())
        stream = streams[0]
        latest = redis.Redis.from_url(os.environ["REDIS_URL"])
        # Tens of MB/s of ticks: Redis's default pub/sub buffer (32 MB, or 8 MB for 60 s) would drop this
        # Python subscriber whenever it falls half a second behind.
        latest.config_set("client-output-buffer-limit", "pubsub 1gb 512mb 60")
        subscriber = Subscriber(os.environ["REDIS_URL"], marker)
        subscriber.start()
        scraper = SummedMetrics(metrics_ports)
        redis_pid = private_redis.pid

        def redis_cpu() -> float:
            return cpu_seconds(redis_pid) if redis_pid else 0.0

        def streams_cpu() -> float:
            return sum(cpu_seconds(s.pid) for s in streams)

        def streaming() -> bool:  # subscribed: the broker sees every instrument on the accounts' connections
            subscribed = broker.state()["ticker"]["subscriptions"]
            if sum(sum(subscribed.get(a["api_key"], [])) for a in accounts) < n:
                return False
            try:
                return scraper.scrape()["received"] > 0
            except requests.RequestException:
                return False

        stream.wait_until(streaming, 180, f"all {n} instruments subscribed and ticks received", interval=0.5)
        layout = {a["api_key"]: broker.state()["ticker"]["subscriptions"].get(a["api_key"], []) for a in accounts}

        print(f"stream pids {[s.pid for s in streams]}, broker pid {broker.pid}; {n:,} instruments in FULL mode; "
              f"connections per api key (instruments each): {layout}; "
              f"marker {marker}; TICK_BATCH_WINDOW_MS={args.window_ms}, TICK_BATCH_MAX_SIZE="
              f"{stream_env.get('TICK_BATCH_MAX_SIZE', 'default')}; {seconds:.0f} s per rate after {warmup:.0f} s warm-up; "
              f"{os.cpu_count()} CPUs (load avg {os.getloadavg()[0]:.2f})", flush=True)
        header = (f"{'offered/s':>10} {'sent/s':>9} {'recv/s':>9} {'pub/s':>8} {'greeks/s':>8} {'distinct':>8} {'dropped':>8} "
                  f"{'stream%':>7} {'broker%':>7} {'sub%':>5} {'redis%':>6} {'lat p50':>8} {'lat p99':>8} {'lat max':>8} "
                  f"{'t→pub p50':>9} {'t→pub p99':>9} {'hop p50':>7} {'samples':>7}")
        print(header)
        rows = []
        for rate in rates:
            tick_rate = rate / n
            broker.settings(tick_rate=tick_rate)
            if fno:  # weights: the near-the-money set ticks faster than the mean; scale to send `rate`
                time.sleep(1.0)
                s0, t0 = broker.state()["ticker"]["ticks_sent"], time.monotonic()
                time.sleep(1.5)
                sent_rate = (broker.state()["ticker"]["ticks_sent"] - s0) / (time.monotonic() - t0)
                if sent_rate > 0:
                    tick_rate *= rate / sent_rate
                    broker.settings(tick_rate=tick_rate)
            time.sleep(warmup)
            m0, s0 = scraper.scrape(), broker.state()["ticker"]["ticks_sent"]
            c0 = (streams_cpu(), cpu_seconds(broker.pid), sum(os.times()[:2]), redis_cpu())
            subscriber.reset()
            latest.delete("ticks:latest")  # what the stream publishes from now on: the phase's distinct instruments
            t0 = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            st = subscriber.reset()
            distinct = latest.hlen("ticks:latest")
            m1, s1 = scraper.scrape(), broker.state()["ticker"]["ticks_sent"]
            c1 = (streams_cpu(), cpu_seconds(broker.pid), sum(os.times()[:2]), redis_cpu())
            for k, s_ in enumerate(streams):
                if not s_.alive():
                    raise RuntimeError(f"stream exited: {(work / f'stream-{k}.log').read_text()[-3000:]}")
            t2p = [(le, c - dict(m0["t2p"]).get(le, 0.0)) for le, c in m1["t2p"]]
            enrich_n = m1["enrich_count"] - m0["enrich_count"]
            row = {
                "offered": rate, "sent": (s1 - s0) / elapsed, "received": (m1["received"] - m0["received"]) / elapsed,
                "published": st["ticks"] / elapsed, "greeks": st["greeks"] / elapsed,
                "distinct": distinct, "subscribed": n, "options": st["options"] / elapsed,
                "published_metric": sum((m1["published"] - m0["published"]).values()) / elapsed,
                "dropped": sum(m1["dropped"].values()) - sum(m0["dropped"].values()),
                "dropped_by": dict(m1["dropped"] - m0["dropped"]),
                "stream_cpu": 100 * (c1[0] - c0[0]) / elapsed, "broker_cpu": 100 * (c1[1] - c0[1]) / elapsed,
                "sub_cpu": 100 * (c1[2] - c0[2]) / elapsed, "redis_cpu": 100 * (c1[3] - c0[3]) / elapsed,
                "lat_p50": percentile(st["latency_ms"], 0.5), "lat_p99": percentile(st["latency_ms"], 0.99),
                "lat_max": max(st["latency_ms"]) if st["latency_ms"] else None,
                "t2p_p50": _ms(histogram_quantile(t2p, 0.5)), "t2p_p99": _ms(histogram_quantile(t2p, 0.99)),
                "hop_p50": percentile(st["hop_ms"], 0.5), "samples": len(st["latency_ms"]),
                "messages": st["messages"], "batches": (m1["batches"] - m0["batches"]) / elapsed,
                "enrich_ms": 1000 * (m1["enrich_sum"] - m0["enrich_sum"]) / enrich_n if enrich_n else None,
                "marker_missing_greeks": st["marker_missing_greeks"], "t2p_buckets": t2p,
            }
            rows.append(row)
            print(f"{rate:>10,} {row['sent']:>9,.0f} {row['received']:>9,.0f} {row['published']:>8,.0f} "
                  f"{row['greeks']:>8,.0f} {row['distinct']:>8,} {row['dropped']:>8,.0f} {row['stream_cpu']:>7.0f} {row['broker_cpu']:>7.0f} "
                  f"{row['sub_cpu']:>5.0f} {row['redis_cpu']:>6.0f} {_f(row['lat_p50'])} {_f(row['lat_p99'])} {_f(row['lat_max'])} "
                  f"{_f(row['t2p_p50'], 9)} {_f(row['t2p_p99'], 9)} {_f(row['hop_p50'], 7)} {row['samples']:>7}",
                  flush=True)

        print("\ncolumns: ticks/s; CPU % of one core (sub = this process, the subscriber); latencies ms. lat = broker send → subscriber receive of the "
              "marker tick (age of the tick a client gets); t→pub = the stream's frame arrival → publish histogram "
              "(every frame, superseded ticks included); hop = stream publish → subscriber receive.")
        print("per rate: flushes/s, mean Greeks time per flush, stream's own published counter, drops by reason:")
        for r in rows:
            print(f"  {r['offered']:>7,}: {r['batches']:6.1f} flushes/s, {r['messages'] / seconds:6.1f} messages/s, "
                  f"enrich {_f(r['enrich_ms'], 0).strip()} ms/flush, published (metric) {r['published_metric']:,.0f}/s, "
                  f"dropped {r['dropped_by'] or 0}, marker ticks without IV {r['marker_missing_greeks']}")
        sample = subscriber.marker_sample
        if sample:
            print("marker tick as published: " + json.dumps({k: sample.get(k) for k in (
                "tradingsymbol", "last_price", "last_traded_quantity", "underlying_price", "underlying_source",
                "greeks")}))
        top = rows[-1]
        print(f"stream_tick_to_publish_seconds at {top['offered']:,}/s (bucket le → share of frames): " + ", ".join(
            f"≤{le * 1000:g}ms {100 * c / top['t2p_buckets'][-1][1]:.0f}%" for le, c in top["t2p_buckets"]
            if top["t2p_buckets"][-1][1] > 0))

        verdict(rows, args.window_ms, fno)
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (the 2 cores are shared; other work skews the figures)")
        if args.py_spy_seconds > 0:
            broker.settings(tick_rate=rates[-1] / n)
            time.sleep(1)
            for s_ in streams:
                print("\n" + py_spy_summary(s_.pid, args.py_spy_seconds, work))
        return 0
    finally:  # every step on its own: one failing must not leave the others running
        for step in (subscriber and subscriber.stop, *[s_.stop for s_ in streams], broker and broker.stop,
                     environment.close, private_redis.stop):
            if step:
                try:
                    step()
                except Exception as exc:
                    print(f"teardown: {step.__qualname__} failed: {exc!r}", file=sys.stderr)
        if args.keep_logs or args.py_spy_seconds:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def sustained(r: dict) -> bool:
    return (r["received"] >= SUSTAINED_FRACTION * r["sent"] and r["dropped"] == 0
            and r["lat_p99"] is not None and r["lat_p99"] < 1000)


def verdict(rows: list[dict], window_ms: int, market_scale: bool = False) -> None:
    if market_scale:
        verdict_at_market_scale(rows, window_ms)
        return
    ok = [r for r in rows if sustained(r)]
    best = max(ok, key=lambda r: r["received"]) if ok else None
    print()
    if best:
        print(f"sustained: {best['received']:,.0f} ticks/s received and decoded (broker sent {best['sent']:,.0f}/s), "
              f"of which {best['published']:,.0f}/s published after newest-per-token batching, "
              f"{best['greeks']:,.0f}/s option ticks with IV+Greeks computed; stream CPU {best['stream_cpu']:.0f}%")
    else:
        print("sustained: no rate was sustained (received < 97 % of sent, drops, or p99 ≥ 1 s)")
    got = best["received"] if best else 0.0
    print(f"target ≥ 100,000 ticks/s sustained with Greeks: {'MET' if got >= 100_000 else 'NOT MET'} "
          f"({got:,.0f}/s received and processed; Greeks are computed for every published option tick)")
    at50 = [r for r in rows if r["offered"] == 50_000]
    if at50:
        r = at50[0]
        limit = window_ms + 20
        met = r["lat_p99"] is not None and r["lat_p99"] <= limit and sustained(r)
        print(f"target at 50,000 ticks/s p99 ≤ {limit} ms (window {window_ms} + 20): {'MET' if met else 'NOT MET'} "
              f"(p99 {_f(r['lat_p99']).strip()} ms broker send → subscriber; stream's own tick→publish p99 "
              f"{_f(r['t2p_p99']).strip()} ms)")
    else:
        print("target at 50,000 ticks/s: not measured (add 50000 to --rates)")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _f(value: float | None, width: int = 8) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.1f}"


def verdict_at_market_scale(rows: list[dict], window_ms: int) -> None:
    """Issue "The whole F&O market": ≥ 100,000 distinct ticks/s received, ≥ 50,000/s published with
    Greeks, every subscribed instrument in the published batches, p99 ≤ window + 30 ms."""
    limit = window_ms + 30
    print()
    for r in rows:
        checks = {
            "received ≥ 100,000/s": r["received"] >= 100_000 and r["received"] >= SUSTAINED_FRACTION * r["sent"],
            "published ≥ 50,000/s, option ticks with IV ≥ 95 %": r["published"] >= 50_000
            and r["greeks"] >= 0.95 * r["options"],
            f"all {r['subscribed']:,} instruments published": r["distinct"] >= r["subscribed"],
            "no drops": r["dropped"] == 0,
            f"p99 ≤ {limit} ms": r["lat_p99"] is not None and r["lat_p99"] <= limit,
        }
        met = all(checks.values())
        print(f"offered {r['offered']:,}/s: {'MET' if met else 'NOT MET'} — " + "; ".join(
            f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items())
            + f" (received {r['received']:,.0f}/s, published {r['published']:,.0f}/s, greeks {r['greeks']:,.0f}/s, "
              f"distinct {r['distinct']:,}, p99 {_f(r['lat_p99']).strip()} ms, stream CPU {r['stream_cpu']:.0f}%)")


if __name__ == "__main__":
    sys.exit(main())

