"""Soak: the whole stack for --minutes at each account's full order rate, and every process's memory over time.

    .venv/bin/python bench/soak.py [--minutes 10] [--ws-clients 20] [--accounts 1] [--no-faults] [--json]
                                   [--rate-factor 1.0] [--sample-s 5]

Starts its own stack (bench/stack.py: private PostgreSQL database and Redis DB, the paper broker, a Celery
worker with its prefork pool, gunicorn as in production) plus Celery beat and the streaming worker, as
`make run` does, and for --minutes:

  * single orders on every account at its full placement rate, min(ORDER_RATE_PER_SECOND,
    ORDER_RATE_PER_MINUTE / 60), less what the batches place (× --rate-factor: 5 is an overload run);
  * a 2-leg spread batch per account every --batch-interval s;
  * --ws-clients WebSocket clients (aiohttp, separate processes: bench/load.py's WsFleet), half on the
    order stream of an account and half on NIFTY's ticks (the stream process streams the NIFTY chain);
  * unless --no-faults, a paper-broker fault every minute (sim/faults.py through /_sim/faults), in turn:
    a burst of 5xx answers, placements that time out after the broker accepted them, a dropped ticker
    socket, a burst of 429s.

Every --sample-s it reads the resident memory (VmRSS) of every process of the stack, including Celery's
pool children and gunicorn's worker, and prints a line a minute. At the end: per process its RSS at each
minute, its peak and its growth from the first minute to the end; orders sent, accepted and placed.
Exits 1 naming the process when one grew by more than --max-growth (10 %) after the first minute (the
paper broker is reported but not judged: like Kite, it keeps the day's orders). `make bench` runs it too,
for the full 10 minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import requests

from load import Stats, WsFleet, _process_tree, memory_kib, order_body
from stack import bench_stack

from tests.support.processes import ManagedProcess, StreamProcess

MIB = 1024.0
# Reported, not judged: the paper broker stands in for Kite, which keeps the day's orders and their history
# by design (its memory grows with the orders placed, ~9 KB each, as Kite's order book does).
NOT_JUDGED = {"broker": "the paper broker keeps the day's orders and their history, as Kite does"}
FAULTS = (  # (label, /_sim/faults settings), injected in turn
    ("5xx burst", {"error_status": 503, "error_next": 10}),
    ("placements time out after the broker accepted them", {"accept_then_timeout_next": 2, "timeout_s": 10}),
    ("ticker socket dropped", {"drop_ws": True}),
    ("429 burst", {"error_status": 429, "error_next": 10}),
)


def say(message: str, quiet: bool = False) -> None:
    print(message, file=sys.stderr if quiet else sys.stdout, flush=True)


# --- the processes of the stack and their memory ---------------------------------------------

@dataclass
class Tracked:
    name: str
    pid: int
    first_at: float  # seconds into the run of its first sample
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the run, RSS KiB)

    def rss_at(self, at: float) -> int | None:
        """RSS of the sample nearest to `at` seconds (None before the process was seen)."""
        if not self.samples or at < self.first_at - 1:
            return None
        return min(self.samples, key=lambda sample: abs(sample[0] - at))[1]

    @property
    def peak(self) -> int:
        return max(rss for _, rss in self.samples)

    @property
    def last(self) -> int:
        return self.samples[-1][1]


class MemorySampler(threading.Thread):
    """Every `period` s the RSS of each process under the stack's roots (new pool children included)."""

    def __init__(self, roots: dict[str, tuple[int, str]], period: float, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="soak-memory")
        self.roots, self.period, self.stop = roots, period, stop  # roots: name -> (pid, children's name)
        self.processes: dict[int, Tracked] = {}
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def sample(self) -> None:
        now = time.monotonic() - self.started
        with self.lock:
            for name, (root, child_name) in self.roots.items():
                children = sorted(_process_tree(root) - {root})
                for pid in [root, *children]:
                    try:
                        rss = memory_kib(pid)[0]
                    except (OSError, ValueError, IndexError):
                        continue  # gone between the listing and the read
                    tracked = self.processes.get(pid)
                    if tracked is None:
                        label = name if pid == root else f"{child_name} {pid}"
                        tracked = self.processes[pid] = Tracked(label, pid, now)
                    tracked.samples.append((now, rss))

    def alive(self) -> list[Tracked]:
        with self.lock:
            latest = max((t.samples[-1][0] for t in self.processes.values()), default=0.0)
            return [t for t in self.processes.values() if t.samples[-1][0] >= latest - 0.5]

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.period)


# --- load -----------------------------------------------------------------------------------------

def nifty_options(count: int = 24) -> list:
    """CE and PE of the `count` / 2 strikes nearest the middle of NIFTY's nearest expiry."""
    from app.market.instruments import registry

    options = [i for i in registry().all() if i.name == "NIFTY" and i.is_option]
    expiry = min(o.expiry for o in options)
    nearest = sorted((o for o in options if o.expiry == expiry), key=lambda o: (o.strike, o.instrument_type))
    middle = len(nearest) // 2
    return nearest[max(0, middle - count // 2): middle + count // 2]


def as_symbol(instrument) -> dict:
    return {"exchange": instrument.exchange, "tradingsymbol": instrument.tradingsymbol,
            "lot_size": instrument.lot_size}


def paced(rate: float, stop: threading.Event, send) -> None:
    """Call send(n) `rate` times a second until stop, catching up when a call ran long."""
    if rate <= 0:
        return
    interval, n, started = 1.0 / rate, 0, time.monotonic()
    while not stop.is_set():
        delay = started + n * interval - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        send(n)
        n += 1


def order_sender(base: str, headers: dict, account: str, symbols: list[dict], stats: Stats):
    http = requests.Session()
    http.headers.update(headers)

    def send(n: int) -> None:
        started = time.perf_counter()
        try:
            response = http.post(f"{base}/accounts/{account}/orders", json=order_body(symbols[n % len(symbols)], n),
                                 headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=15)
            stats.request("order", time.perf_counter() - started, response.status_code)
            if response.status_code >= 400:
                stats.errors[f"order {response.status_code} {response.text[:100]}"] += 1
        except requests.RequestException as exc:
            stats.errors[f"order {type(exc).__name__}"] += 1
    return send


def batch_sender(base: str, headers: dict, account: str, symbols: list[dict], stats: Stats, outcomes: Counter):
    """A vertical spread (buy one strike, sell one two strikes away), its sides swapped each time."""
    http = requests.Session()
    http.headers.update(headers)

    def send(n: int) -> None:
        low, high = symbols[n % (len(symbols) - 4)], symbols[n % (len(symbols) - 4) + 4]
        sides = ("BUY", "SELL") if n % 2 == 0 else ("SELL", "BUY")
        legs = [order_body(low, n, sides[0]), order_body(high, n, sides[1])]
        started = time.perf_counter()
        try:
            response = http.post(f"{base}/accounts/{account}/batch-orders", json={"legs": legs, "wait": 10},
                                 headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=30)
            stats.request("batch", time.perf_counter() - started, response.status_code)
            if response.status_code >= 400:
                stats.errors[f"batch {response.status_code} {response.text[:100]}"] += 1
            else:
                outcomes[response.json().get("status", "?")] += 1
        except requests.RequestException as exc:
            stats.errors[f"batch {type(exc).__name__}"] += 1
    return send



def order_figures(accounts: list[str]) -> dict:
    """Orders of the run in the database: by status, and how many reached the broker."""
    from sqlalchemy import func, select

    from app.core.db import new_session
    from app.models import Order

    with new_session() as session:
        by_status = dict(session.execute(select(Order.status, func.count()).where(Order.account_id.in_(accounts))
                                         .group_by(Order.status)).all())
        placed = session.scalar(select(func.count()).where(Order.account_id.in_(accounts),
                                                           Order.broker_order_id.is_not(None)))
    return {"by_status": by_status, "placed": placed or 0}


def queue_length(name: str) -> int | None:
    from app.core.redis_client import get_redis

    try:
        return get_redis().llen(name)
    except Exception:
        return None


# --- the run ----------------------------------------------------------------------------------------

def own_child(marker: str) -> int:
    """The pid of this process's child whose command line contains `marker` (bench_stack's Celery worker)."""
    for pid in sorted(_process_tree(os.getpid()) - {os.getpid()}):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker in fh.read().replace(b"\0", b" ").decode(errors="replace"):
                    return pid
        except OSError:
            continue
    raise RuntimeError(f"no child process runs {marker!r}")


def log_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        return "?"


def start_beat(cleanups: list) -> ManagedProcess:
    schedule = os.path.join(tempfile.mkdtemp(prefix="soak-beat-"), "celerybeat-schedule")
    beat = ManagedProcess("celery-beat", [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat",
                                          "-l", "INFO", "--schedule", schedule])
    beat.start()
    cleanups.append(beat.stop)
    return beat


def add_accounts(broker, count: int) -> list[str]:
    from app import accounts as account_service
    from app.core.db import session_scope

    ids = ["primary"]
    for n in range(2, count + 1):
        creds = {"api_key": f"soak-{n}", "api_secret": f"soak-secret-{n}", "access_token": f"soak-token-{n}"}
        broker.add_account(**creds)
        with session_scope() as session:
            account_service.add_account(session, f"soak-{n}", **creds)
        ids.append(f"soak-{n}")
    return ids


def subscribe_nifty(base: str, headers: dict) -> int:
    """Every NIFTY instrument (index, futures, options) in FULL mode, shared by the accounts."""
    from app.market.instruments import registry

    tokens = [i.instrument_token for i in registry().all() if i.name == "NIFTY"]
    response = requests.post(f"{base}/subscriptions/bulk", headers=headers, timeout=30,
                             json={"instrument_tokens": tokens, "requested_mode": "FULL"})
    response.raise_for_status()
    return len(tokens)


def ws_connections(base: str, headers: dict) -> int | str:
    """Open WebSockets, as the web process counts them (tick sockets send no snapshot to count by)."""
    try:
        return requests.get(f"{base}/ws/status", headers=headers, timeout=5).json()["connections"]["total"]
    except Exception:
        return "?"


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / MIB:.0f}"


def progress_line(elapsed: float, stats: Stats, sampler: MemorySampler, accounts: list[str],
                  base: str, headers: dict) -> str:
    with stats.lock:
        orders, batches = Counter(stats.status["order"]), Counter(stats.status["batch"])
    accepted = sum(n for status, n in orders.items() if isinstance(status, int) and status < 300)
    try:
        figures = order_figures(accounts)
        placed, queued = figures["placed"], figures["by_status"].get("QUEUED", 0)
    except Exception:
        placed = queued = "?"
    sockets = ws_connections(base, headers)
    memory = " ".join(f"{t.name.split(' ')[0]}={mib(t.last)}" for t in sorted(sampler.alive(), key=lambda t: t.pid))
    return (f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] orders sent {sum(orders.values())} accepted {accepted} "
            f"placed {placed} queued {queued} (orders queue {queue_length('orders')}) | batches {sum(batches.values())} "
            f"| sockets {sockets} | RSS MiB {memory}")


def in_mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / MIB, 1)


def judge(processes: list[Tracked], baseline_at: float, end_at: float, max_growth: float) -> list[dict]:
    """Per process: RSS at the start, each minute, the end and its peak; growth from `baseline_at` to the end
    (None for a process that started after it, e.g. a replaced pool child)."""
    rows = []
    for tracked in sorted(processes, key=lambda t: (t.name.split(" ")[0], t.pid)):
        base = tracked.rss_at(baseline_at) if tracked.first_at <= baseline_at else None
        end = tracked.rss_at(end_at)
        growth = (end - base) / base * 100 if base and end else None
        rows.append({"name": tracked.name, "pid": tracked.pid, "first_seen_s": round(tracked.first_at, 1),
                     "start_mib": in_mib(tracked.samples[0][1]), "baseline_mib": in_mib(base),
                     "end_mib": in_mib(end), "peak_mib": in_mib(tracked.peak),
                     "growth_pct": None if growth is None else round(growth, 1),
                     "judged": tracked.name not in NOT_JUDGED,
                     "exceeds": growth is not None and growth > max_growth and tracked.name not in NOT_JUDGED,
                     "per_minute_mib": {str(m): in_mib(tracked.rss_at(m * 60.0))
                                        for m in range(1, int(end_at // 60) + 1)}})
    return rows


def print_table(rows: list[dict], minutes: int, out) -> None:
    def cell(value: float | None) -> str:
        return f"{'-' if value is None else format(value, '.0f'):>7}"

    heads = ["start"] + [f"{m} min" for m in range(1, minutes + 1)] + ["end", "peak"]
    print(f"{'process':<24}" + "".join(f"{h:>7}" for h in heads) + f"{'growth':>9}", file=out)
    for row in rows:
        values = [row["start_mib"], *(row["per_minute_mib"].get(str(m)) for m in range(1, minutes + 1)),
                  row["end_mib"], row["peak_mib"]]
        growth = "new" if row["growth_pct"] is None else f"{row['growth_pct']:+.1f} %"
        note = "" if row["judged"] else "  (not judged: " + NOT_JUDGED[row["name"]] + ")"
        print(f"{row['name'][:23]:<24}" + "".join(cell(v) for v in values) + f"{growth:>9}{note}", file=out)
    print("(RSS in MiB when the load started, at each minute of it, at its end, and the peak; growth: from the "
          "first minute to the end)", file=out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--ws-clients", type=int, default=20, help="half on order streams, half on NIFTY ticks")
    parser.add_argument("--accounts", type=int, default=1, help="accounts trading, each at its full rate")
    parser.add_argument("--no-faults", action="store_true", help="inject no paper-broker faults")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (progress goes to stderr)")
    parser.add_argument("--rate-factor", type=float, default=1.0,
                        help="single orders at this multiple of the rate (5: an overload run)")
    parser.add_argument("--batch-interval", type=float, default=5.0, help="seconds between batches per account")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--fault-every", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker concurrency (make run's default)")
    parser.add_argument("--max-growth", type=float, default=10.0, help="percent allowed after the first minute")
    args = parser.parse_args()
    quiet = args.json
    duration = args.minutes * 60.0

    stop = threading.Event()
    stats = Stats()
    batch_outcomes: Counter = Counter()
    cleanups: list = []
    fleets: list[WsFleet] = []
    faults: list[dict] = []
    # Production's timings rather than the tests' short ones.
    env = {"ORDER_RETRY_BASE_S": "0.5", "ORDER_RETRY_CAP_S": "30", "BROKER_TIMEOUT_S": "7", "LOG_LEVEL": "WARNING"}
    with bench_stack(worker_concurrency=args.workers, env=env) as (app, server, broker, headers):
        try:
            from app.core.config import get_settings

            settings = get_settings()
            accounts = add_accounts(broker, args.accounts)
            # Enough daily budget at the broker and here for the whole run: the day's limit is not what is measured.
            budget = max(settings.order_budget_per_day, int(settings.order_rate_per_minute * (args.minutes + 2) * 3))
            broker.settings(order_limits={"per_day": budget})
            beat = start_beat(cleanups)
            stream = StreamProcess(env={"LOG_LEVEL": "WARNING"})
            stream.start(wait_live_s=60)
            cleanups.append(stream.stop)
            base = server.url
            streamed = subscribe_nifty(base, headers)
            worker_pid = own_child("workers.celery_app worker")
            roots = {"web": (server.pid, "web-worker"), "celery": (worker_pid, "celery-pool"),
                     "beat": (beat.pid, "beat-child"), "stream": (stream.pid, "stream-child"),
                     "broker": (broker.pid, "broker-child")}

            rate = min(settings.order_rate_per_second, settings.order_rate_per_minute / 60.0)
            legs_rate = 2 / args.batch_interval
            singles = max(0.0, rate * args.rate_factor - legs_rate)
            threads_per_account = max(1, math.ceil(singles / 8))  # one HTTP request at a time per thread
            symbols = [as_symbol(i) for i in nifty_options()]
            say(f"soak: {args.minutes:g} min; {len(accounts)} account(s) at {rate:.2f} placements/s each "
                f"(ORDER_RATE_PER_SECOND {settings.order_rate_per_second:g}, ORDER_RATE_PER_MINUTE "
                f"{settings.order_rate_per_minute:g}) x {args.rate_factor:g}: {singles:.2f} single orders/s + a 2-leg "
                f"batch every {args.batch_interval:g} s; {args.ws_clients} WebSocket clients; stream: {streamed} NIFTY "
                f"instruments in FULL; faults {'off' if args.no_faults else f'every {args.fault_every:g} s'}; "
                f"Celery concurrency {args.workers}", quiet)
            say(f"logs: web {server.log_path}, worker {log_of(worker_pid)}, beat {beat.log_path}, "
                f"stream {stream.log_path}, broker {broker.log_path}", quiet)

            if args.ws_clients:
                key = headers["X-API-Key"]
                ws_base = base.replace("http", "ws", 1)
                order_clients, tick_clients = (args.ws_clients + 1) // 2, args.ws_clients // 2
                for n, account in enumerate(accounts):
                    share = order_clients // len(accounts) + (1 if n < order_clients % len(accounts) else 0)
                    if share:
                        fleets.append(WsFleet(f"{ws_base}/ws/orders/{account}?api_key={key}", share, 1))
                if tick_clients:
                    fleets.append(WsFleet(f"{ws_base}/ws/ticks?underlying=nifty&api_key={key}", tick_clients, 1))
                for fleet in fleets:
                    fleet.wait_ready()
                say(f"ws: {ws_connections(base, headers)} of {args.ws_clients} clients connected "
                    f"({order_clients} on order streams, {tick_clients} on NIFTY ticks)", quiet)

            sampler = MemorySampler(roots, args.sample_s, stop)
            sampler.start()
            threads = []
            for account in accounts:
                for t in range(threads_per_account):
                    send = order_sender(base, headers, account, symbols[t::threads_per_account] or symbols, stats)
                    threads.append(threading.Thread(target=paced, args=(singles / threads_per_account, stop, send),
                                                    daemon=True, name=f"orders-{account}-{t}"))
                threads.append(threading.Thread(target=paced, daemon=True, name=f"batches-{account}",
                                                args=(1 / args.batch_interval, stop,
                                                      batch_sender(base, headers, account, symbols, stats,
                                                                   batch_outcomes))))
            for thread in threads:
                thread.start()

            next_fault, next_line, fault_no = 45.0, 60.0, 0
            while True:
                elapsed = time.monotonic() - sampler.started
                if elapsed >= duration:
                    break
                if not args.no_faults and elapsed >= next_fault:
                    label, settings_change = FAULTS[fault_no % len(FAULTS)]
                    try:
                        broker.set_faults(**settings_change)
                        faults.append({"at_s": round(elapsed, 1), "fault": label})
                        say(f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] fault: {label}", quiet)
                    except requests.RequestException as exc:
                        say(f"fault not injected: {exc}", quiet)
                    fault_no += 1
                    next_fault += args.fault_every
                if elapsed >= next_line:
                    say(progress_line(elapsed, stats, sampler, accounts, base, headers), quiet)
                    next_line += 60.0
                for process in (server, beat, stream):
                    process.ensure_alive()
                if not os.path.exists(f"/proc/{worker_pid}"):
                    raise SystemExit(f"the Celery worker exited; see {log_of(worker_pid)}")
                time.sleep(min(1.0, max(0.05, duration - elapsed)))
            sampler.sample()
            end_at = time.monotonic() - sampler.started
            say(progress_line(end_at, stats, sampler, accounts, base, headers), quiet)
            stop.set()
            for thread in threads:
                thread.join(35)
            ws_results = [r for fleet in fleets for r in fleet.stop(None, None)]
            figures = order_figures(accounts)
        finally:
            stop.set()
            for fleet in fleets:
                fleet.kill()
            for cleanup in reversed(cleanups):
                cleanup()

    rows = judge(list(sampler.processes.values()), 60.0, end_at, args.max_growth)
    judged = [r for r in rows if r["growth_pct"] is not None and r["judged"]]
    failures = [r for r in judged if r["exceeds"]]
    orders, batches = stats.status["order"], stats.status["batch"]
    accepted = sum(n for status, n in orders.items() if isinstance(status, int) and status < 300)
    messages = Counter()
    for result in ws_results:
        messages.update(result["messages"])
    report = {
        "minutes": args.minutes, "accounts": len(accounts), "rate_per_account": rate, "rate_factor": args.rate_factor,
        "single_orders_per_s": singles, "ws_clients": args.ws_clients,
        "orders": {"sent": sum(orders.values()), "accepted": accepted, "placed": figures["placed"],
                   "http_statuses": {str(k): v for k, v in orders.items()}, "by_status": figures["by_status"],
                   "request_p50_ms": round(statistics.median(stats.latency["order"]) * 1000, 1)
                   if stats.latency["order"] else None},
        "batches": {"sent": sum(batches.values()), "http_statuses": {str(k): v for k, v in batches.items()},
                    "outcomes": dict(batch_outcomes)},
        "ws": {"connects": sum(r["connects"] for r in ws_results), "reconnects": sum(r["reconnects"] for r in ws_results),
               "messages": dict(messages)},
        "faults": faults, "errors": dict(stats.errors.most_common(10)),
        "processes": rows, "max_growth_pct": args.max_growth,
        "passed": not failures and bool(judged),
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        out = sys.stdout
        print(f"\n== soak {end_at / 60:.1f} min", file=out)
        print(f"orders:  {report['orders']['sent']} sent, {accepted} accepted, {figures['placed']} placed at the broker; "
              f"HTTP {dict(orders)}; by status {figures['by_status']}", file=out)
        print(f"batches: {report['batches']['sent']} sent; HTTP {dict(batches)}; outcomes {dict(batch_outcomes)}", file=out)
        print(f"ws:      {report['ws']['connects']} connects, {report['ws']['reconnects']} reconnects; "
              f"messages {dict(messages)}", file=out)
        injected = ", ".join(f"{f['at_s']:.0f} s {f['fault']}" for f in faults)
        print(f"faults:  {injected or 'none'}", file=out)
        for text, count in stats.errors.most_common(8):
            print(f"   {count:6d}  {text}", file=out)
        print_table(rows, int(end_at // 60), out)
    if not judged:
        say("soak: NO VERDICT: the run was shorter than two minutes, no process has a first-minute figure", quiet)
        return 1
    for row in failures:
        say(f"soak: FAIL: {row['name']} (pid {row['pid']}) grew {row['growth_pct']:+.1f} % after the first minute "
            f"({row['baseline_mib']} -> {row['end_mib']} MiB), above {args.max_growth:g} %", quiet)
    if not failures:
        worst = max(judged, key=lambda r: r["growth_pct"])
        say(f"soak: PASS: every process within {args.max_growth:g} % after the first minute "
            f"(largest: {worst['name']} {worst['growth_pct']:+.1f} %)", quiet)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
