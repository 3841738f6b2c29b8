"""Load: single orders, batches and WebSocket clients against a running stack, for a duration.

    .venv/bin/python bench/load.py --base-url http://127.0.0.1:5000 --api-key KEY [--account primary]
    .venv/bin/python bench/load.py            # starts its own stack (python -m launcher, a fresh SQLite
                                              # database in a temporary directory) and stops it after

Mixes, for --duration seconds (default 120):
  * --order-threads threads placing one order each time (POST /accounts/{id}/orders, Idempotency-Key);
  * one thread placing a 2-leg batch every --batch-interval s (POST /accounts/{id}/batch-orders);
  * --ws-clients WebSocket clients on /ws/orders/{id} (aiohttp, one asyncio loop in each of --ws-procs
    separate processes, so the order threads and the GIL of this process cannot slow them), connected
    before the load starts, counting order updates, their latency (message timestamp to receipt), out-of-order seqs,
    server closes (e.g. 1013, too slow) and reconnecting after a close.
Prints throughput, latency percentiles, HTTP statuses and errors, WebSocket message counts, deliveries per
client against the updates published (the account's seq before and after), update latency (whole run and
per window), the client processes' own CPU and event-loop lag (is the client keeping up?), the CPU seconds
and the peak resident memory (VmHWM from /proc) of every service process.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections import Counter
from datetime import datetime

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import ManagedProcess, ProcessExited  # noqa: E402

SERVICE_MARKERS = ("gunicorn", "celery", "workers.stream", "-m sim", "flower", "valkey", "launcher")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (f"p50 {at(0.50):.1f} ms  p95 {at(0.95):.1f} ms  p99 {at(0.99):.1f} ms  "
            f"max {ordered[-1] * 1000:.1f} ms  (n={len(ordered)})")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"order": [], "batch": []}
        self.status: dict[str, Counter] = {"order": Counter(), "batch": Counter()}
        self.errors: Counter = Counter()

    def request(self, kind: str, seconds: float, status) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.status[kind][status] += 1


# --- the stack -------------------------------------------------------------------

def start_stack(port: int) -> ManagedProcess:
    # A fresh database each run: `make run`'s instance/ticker.db keeps what an earlier run left
    # queued, and the stack would work that off (as it should) in the middle of the measurement.
    data = tempfile.mkdtemp(prefix="load-stack-")
    # A group of its own, stopped with Ctrl-C's SIGINT as a person stops `make run`.
    proc = ManagedProcess("launcher", [sys.executable, "-m", "launcher"], own_group=True, stop_signal=signal.SIGINT,
                          stop_timeout=30, env={"PORT": str(port), "DATABASE_URL": f"sqlite:///{data}/ticker.db"})
    print(f"launcher output: {proc.log_path}", flush=True)
    proc.start()
    base = f"http://127.0.0.1:{port}"

    def health() -> str | None:
        try:
            return requests.get(f"{base}/health", timeout=2).json().get("status")
        except (requests.RequestException, ValueError):
            return None

    try:
        proc.wait_until(health, 180, "the stack to become healthy", interval=1.0,
                        until=lambda status: status in ("ok", "degraded"))
    except ProcessExited:
        raise SystemExit(f"launcher exited with {proc.process.returncode}") from None
    except TimeoutError:
        proc.stop()
        raise SystemExit("the stack did not become healthy within 180 s") from None
    return proc


def _process_tree(root_pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    tree, stack = set(), [root_pid]
    while stack:
        pid = stack.pop()
        tree.add(pid)
        stack.extend(children.get(pid, []))
    return tree


def service_processes(root_pid: int | None) -> dict[int, str]:
    """pid -> command line of the service's processes: the launcher's tree, or matching local processes."""
    pids = _process_tree(root_pid) if root_pid else {int(p) for p in os.listdir("/proc") if p.isdigit()}
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and (root_pid or any(marker in cmd for marker in SERVICE_MARKERS)) and pid != os.getpid():
            found[pid] = cmd
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class MemoryWatch(threading.Thread):
    """Every 2 s: the peak RSS of every service process, and its CPU seconds since mark()."""

    def __init__(self, root_pid: int | None, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.stop = root_pid, stop
        self.peak: dict[int, tuple[int, str]] = {}
        self.cpu_start: dict[int, float] | None = None  # pid -> CPU seconds at mark()
        self.cpu_last: dict[int, float] = {}
        self.rss_start: dict[int, int] = {}  # KiB at mark()
        self.rss_last: dict[int, int] = {}
        self.lock = threading.Lock()

    def sample(self) -> None:
        with self.lock:
            for pid, cmd in service_processes(self.root_pid).items():
                try:
                    rss, hwm = memory_kib(pid)
                    cpu = cpu_seconds(pid)
                except (OSError, ValueError, IndexError):
                    continue
                self.rss_last[pid] = rss
                if hwm > self.peak.get(pid, (0, cmd))[0]:
                    self.peak[pid] = (hwm, cmd)
                self.peak.setdefault(pid, (hwm, cmd))
                if self.cpu_start is not None:
                    self.cpu_last[pid] = cpu

    def mark(self) -> None:
        """Start counting CPU: processes seen now count from here, later ones from their start."""
        with self.lock:
            self.cpu_start = {}
            for pid in service_processes(self.root_pid):
                try:
                    self.cpu_start[pid] = self.cpu_last[pid] = cpu_seconds(pid)
                    self.rss_start[pid] = memory_kib(pid)[0]
                except (OSError, ValueError, IndexError):
                    continue

    def cpu_used(self) -> dict[int, float]:
        with self.lock:
            start = self.cpu_start or {}
            return {pid: last - start.get(pid, 0.0) for pid, last in self.cpu_last.items()}

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(2)


# --- load ---------------------------------------------------------------------------

def pick_symbols(session: requests.Session, base: str) -> list[dict]:
    response = session.get(f"{base}/instruments", params={"limit": 200}, timeout=10)
    response.raise_for_status()
    body = response.json()
    items = body if isinstance(body, list) else next((v for v in body.values() if isinstance(v, list)), [])
    options = [i for i in items if i.get("exchange") == "NFO" and str(i.get("tradingsymbol", "")).endswith(("CE", "PE"))]
    chosen = options or [i for i in items if i.get("tradingsymbol")]
    if not chosen:
        raise SystemExit("no instruments loaded (flask --app wsgi instruments refresh)")
    return [{"exchange": i.get("exchange", "NFO"), "tradingsymbol": i["tradingsymbol"],
             "lot_size": int(i.get("lot_size") or 1)} for i in chosen[:20]]


def order_body(symbol: dict, n: int, side: str | None = None) -> dict:
    return {"exchange": symbol["exchange"], "tradingsymbol": symbol["tradingsymbol"],
            "transaction_type": side or ("BUY" if n % 2 else "SELL"), "quantity": symbol["lot_size"],
            "product": "NRML", "order_type": "MARKET", "variety": "regular", "validity": "DAY"}


def order_loop(base, key, account, symbols, stats, stop, index):
    session = requests.Session()
    session.headers.update({"X-API-Key": key})
    n = 0
    while not stop.is_set():
        n += 1
        body = order_body(symbols[(index + n) % len(symbols)], n)
        started = time.perf_counter()
        try:
            response = session.post(f"{base}/accounts/{account}/orders", json=body, timeout=15,
                                    headers={"Idempotency-Key": uuid.uuid4().hex})
            stats.request("order", time.perf_counter() - started, response.status_code)
            if response.status_code >= 400:
                stats.errors[f"order {response.status_code} {response.text[:120]}"] += 1
        except requests.RequestException as exc:
            stats.errors[f"order {type(exc).__name__}"] += 1
            stop.wait(0.2)  # the web process is gone or restarting: don't spin


def batch_loop(base, key, account, symbols, stats, stop, interval):
    session = requests.Session()
    session.headers.update({"X-API-Key": key})
    n = 0
    while not stop.wait(interval):
        n += 1
        legs = [order_body(symbols[(n + k) % len(symbols)], n, side) for k, side in enumerate(("BUY", "SELL"))]
        started = time.perf_counter()
        try:
            response = session.post(f"{base}/accounts/{account}/batch-orders", timeout=30,
                                    json={"orders": legs, "rollback_on_failure": True})
            stats.request("batch", time.perf_counter() - started, response.status_code)
            if response.status_code >= 400:
                stats.errors[f"batch {response.status_code} {response.text[:120]}"] += 1
        except requests.RequestException as exc:
            stats.errors[f"batch {type(exc).__name__}"] += 1


# --- WebSocket clients: aiohttp on one asyncio loop per process, away from the order threads ------------
#
# The clients run in --ws-procs spawned processes (multiprocessing, spawn context), each one asyncio loop
# with its share of the clients, so the load generator's GIL and the order threads cannot slow them. The
# parent talks to a process over a Pipe:  child -> ("ready", connected, seconds) once every client has its
# snapshot (or after 60 s);  parent -> ("stop", start_seq, end_seq) at the end of the run;  child -> ("result",
# dict) after waiting (at most WS_DRAIN_S) for its open sockets to reach end_seq.

UPDATE_PREFIX = '{"type": "order_update"'  # app.orders.updates.build_message, json.dumps(): type, account_id, seq, data, timestamp
WS_DRAIN_S = 10.0
CLOSE_NAMES = {1000: "normal", 1001: "going away", 1006: "abnormal", 1008: "policy violation",
               1011: "internal error", 1012: "service restart", 1013: "try again later"}


def parse_update(text: str) -> tuple[int, float] | None:
    """(seq, published epoch) of an order_update frame, or None for any other frame.

    A fast path on the server's own serialization (the top-level "timestamp" is the last key, the top-level
    "seq" the first one), ~1 us against ~5 us for json.loads on an 850-byte update; json.loads otherwise.
    """
    if text.startswith(UPDATE_PREFIX):
        at, seq_at = text.rfind('"timestamp": "'), text.find('"seq": ')
        if at > 0 and seq_at > 0:
            try:
                stamp = text[at + 14:text.index('"', at + 14)]
                return int(text[seq_at + 7:text.index(",", seq_at)]), datetime.fromisoformat(stamp).timestamp()
            except ValueError:
                pass
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("type") != "order_update" or not body.get("timestamp"):
        return None
    return int(body.get("seq") or 0), datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp()


def close_label(code) -> str:
    return f"{code} ({CLOSE_NAMES[code]})" if code in CLOSE_NAMES else str(code)


class WsClientState:
    __slots__ = ("index", "seqs", "connects", "snapshot", "last_seq", "out_of_order", "open")

    def __init__(self, index: int) -> None:
        self.index = index
        self.seqs = array("q")  # seq of every order_update received
        self.connects = 0
        self.snapshot = False  # the current connection has had its snapshot
        self.last_seq = 0  # the current connection's newest seq (snapshot's seq at first)
        self.out_of_order = 0  # updates arriving after one with a higher seq (same connection)
        self.open = False


async def _ws_client(state: WsClientState, session, url: str, shared: dict, stopping: asyncio.Event) -> None:
    import aiohttp

    errors, messages = shared["errors"], shared["messages"]
    latency, received_at = shared["latency"], shared["received_at"]
    timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)
    while not stopping.is_set():
        try:
            async with session.ws_connect(url, heartbeat=None, autoping=True, max_msg_size=0, timeout=timeout) as ws:
                state.connects += 1
                state.open, state.snapshot = True, False
                if state.connects > 1:
                    shared["reconnects"] += 1
                while True:
                    message = await ws.receive()
                    if message.type is aiohttp.WSMsgType.TEXT:
                        now = time.time()
                        text = message.data
                        update = parse_update(text)
                        if update is not None:
                            seq, sent = update
                            messages["order_update"] += 1
                            latency.append(now - sent)
                            received_at.append(now)
                            state.seqs.append(seq)
                            if seq < state.last_seq:
                                state.out_of_order += 1
                            else:
                                state.last_seq = seq
                            continue
                        try:
                            body = json.loads(text)
                            kind = body.get("type", "?") if isinstance(body, dict) else "?"
                        except ValueError:
                            body, kind = None, "not json"
                        messages[kind] += 1
                        if kind == "snapshot" and isinstance(body.get("seq"), int):
                            state.snapshot, state.last_seq = True, body["seq"]
                    elif message.type is aiohttp.WSMsgType.BINARY:
                        messages["binary"] += 1
                    else:  # CLOSE / CLOSING / CLOSED / ERROR
                        break
                state.open = False
                if not stopping.is_set():
                    if message.type is aiohttp.WSMsgType.ERROR:
                        errors[f"ws error {type(message.data).__name__}: {str(message.data)[:80]}"] += 1
                    else:
                        errors[f"ws closed by server, code {close_label(ws.close_code)}"] += 1
        except asyncio.CancelledError:
            raise
        except aiohttp.WSServerHandshakeError as exc:
            errors[f"ws connect HTTP {exc.status}"] += 1
        except Exception as exc:  # refused, reset, timeout ...
            errors[f"ws {'connect ' if not state.open else ''}{type(exc).__name__}"] += 1
        state.open = False
        try:  # 1013 means "try again later": don't hammer
            await asyncio.wait_for(stopping.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


async def _ws_process(conn, url: str, indexes: list[int]) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    shared = {"errors": Counter(), "messages": Counter(), "reconnects": 0,
              "latency": array("d"), "received_at": array("d")}
    stopping = asyncio.Event()
    lags = array("d")

    async def watch_lag() -> None:  # how late the loop wakes a 50 ms sleep: the client's own backlog
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - before - 0.05)

    async def next_command() -> tuple:
        while not conn.poll():
            await asyncio.sleep(0.1)
        return conn.recv()

    states = [WsClientState(i) for i in indexes]
    lag_task = asyncio.create_task(watch_lag())
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=None, sock_connect=15)) as session:
        connect_started = time.monotonic()
        tasks = []
        for n, state in enumerate(states):
            tasks.append(asyncio.create_task(_ws_client(state, session, url, shared, stopping)))
            if n % 50 == 49:
                await asyncio.sleep(0.05)  # connect in waves, as clients arrive in life
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(s.snapshot for s in states):
            await asyncio.sleep(0.05)
        connected = sum(s.snapshot for s in states)
        conn.send(("ready", connected, time.monotonic() - connect_started))
        cpu_before, wall_before = time.process_time(), time.monotonic()
        lags_from = len(lags)

        command = await next_command()
        cpu_used, wall = time.process_time() - cpu_before, time.monotonic() - wall_before
        _, start_seq, end_seq = command
        if end_seq is not None:  # let the open sockets catch up with the last published update
            drain_until = time.monotonic() + WS_DRAIN_S
            while time.monotonic() < drain_until and any(s.open and s.last_seq < end_seq for s in states):
                await asyncio.sleep(0.05)
        stopping.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lag_task.cancel()

    received, duplicates = [], 0  # per client: distinct updates of the run (start_seq, end_seq] received
    for s in states:
        if start_seq is not None and end_seq is not None:
            in_run = [q for q in s.seqs if start_seq < q <= end_seq]
        else:
            in_run = list(s.seqs)
        distinct = len(set(in_run))
        received.append(distinct)
        duplicates += len(in_run) - distinct
    conn.send(("result", {
        "pid": os.getpid(), "clients": len(states), "connected": connected, "reconnects": shared["reconnects"],
        "connects": sum(s.connects for s in states), "errors": dict(shared["errors"]),
        "messages": dict(shared["messages"]), "latency": shared["latency"], "received_at": shared["received_at"],
        "received": received, "out_of_order": sum(s.out_of_order for s in states), "duplicates": duplicates,
        "cpu": cpu_used, "wall": wall, "lags": lags[lags_from:],
    }))


def ws_process_main(conn, url: str, indexes: list[int]) -> None:
    """Entry point of a client process (multiprocessing spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        asyncio.run(_ws_process(conn, url, indexes))
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _probe_seq(url: str) -> int | None:
    """The account's current update seq, from the snapshot of a fresh socket."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        async with session.ws_connect(url, heartbeat=None, max_msg_size=0) as ws:
            body = await ws.receive_json(timeout=20)
            return body.get("seq") if body.get("type") == "snapshot" else None


def probe_seq(url: str) -> int | None:
    try:
        return asyncio.run(_probe_seq(url))
    except Exception as exc:
        print(f"seq probe failed: {type(exc).__name__}: {exc}", flush=True)
        return None


class WsFleet:
    """--ws-clients clients spread over --ws-procs processes."""

    def __init__(self, url: str, clients: int, procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        procs = max(1, min(procs, clients)) if clients else 0
        self.processes, self.pipes = [], []
        for p in range(procs):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=ws_process_main, args=(child, url, list(range(p, clients, procs))),
                                  name=f"load-ws-{p}", daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def _receive(self, pipe, timeout: float):
        if not pipe.poll(timeout):
            raise SystemExit("a WebSocket client process did not answer")
        message = pipe.recv()
        if message[0] == "failed":
            raise SystemExit(f"a WebSocket client process failed: {message[1]}")
        return message

    def wait_ready(self) -> tuple[int, float]:
        answers = [self._receive(pipe, 120) for pipe in self.pipes]
        return sum(a[1] for a in answers), max((a[2] for a in answers), default=0.0)

    def stop(self, start_seq: int | None, end_seq: int | None) -> list[dict]:
        for pipe in self.pipes:
            pipe.send(("stop", start_seq, end_seq))
        results = [self._receive(pipe, WS_DRAIN_S + 60)[1] for pipe in self.pipes]
        for process in self.processes:
            process.join(10)
        return results

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(5)


# --- the run -------------------------------------------------------------------------

def window_percentiles(received_at: array, latency: array, started: float, width: float) -> list[str]:
    """p50/p99 of the update latency per `width` seconds of wall time from `started` (epoch)."""
    buckets: dict[int, list[float]] = {}
    for at, seconds in zip(received_at, latency):
        buckets.setdefault(int((at - started) // width), []).append(seconds)
    rows = []
    for index in sorted(buckets):
        ordered = sorted(buckets[index])
        rows.append(f"{index * width:4.0f}-{(index + 1) * width:<4.0f}s p50 {ordered[len(ordered) // 2] * 1000:7.1f} ms "
                    f"p99 {ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000:7.1f} ms  n={len(ordered)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url")
    parser.add_argument("--api-key")
    parser.add_argument("--account", help="account to trade on (default: the first of GET /accounts)")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--order-threads", type=int, default=4)
    parser.add_argument("--batch-interval", type=float, default=1.0)
    parser.add_argument("--ws-clients", type=int, default=20)
    parser.add_argument("--ws-procs", type=int, default=1,
                        help="processes the WebSocket clients are spread over (one asyncio loop each)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds per row of the update latency over time")
    args = parser.parse_args()

    launcher = None
    base, key = args.base_url, args.api_key
    if not base:
        port = free_port()
        print(f"starting the stack (python -m launcher) on port {port} ...", flush=True)
        launcher = start_stack(port)
        base = f"http://127.0.0.1:{port}"
        with open(os.path.join(ROOT, "instance", "dev-api-key")) as fh:
            key = key or fh.read().strip()
    if not key:
        raise SystemExit("--api-key is required with --base-url")

    stop = threading.Event()
    stats = Stats()
    memory = MemoryWatch(launcher.pid if launcher else None, stop)
    threads: list[threading.Thread] = []
    fleet = None
    ws_results: list[dict] = []
    start_seq = end_seq = None
    try:
        session = requests.Session()
        session.headers.update({"X-API-Key": key})
        account = args.account
        if not account:
            listed = session.get(f"{base}/accounts", timeout=10).json()
            rows = listed if isinstance(listed, list) else next((v for v in listed.values() if isinstance(v, list)), [])
            if not rows:
                raise SystemExit("no account registered (flask --app wsgi accounts add ...)")
            account = rows[0]["account_id"] if "account_id" in rows[0] else rows[0]["id"]
        symbols = pick_symbols(session, base)
        print(f"load: {base} account={account} duration={args.duration:.0f}s order_threads={args.order_threads} "
              f"batch_every={args.batch_interval}s ws_clients={args.ws_clients} ws_procs={args.ws_procs} "
              f"symbols={len(symbols)}", flush=True)

        memory.start()
        ws_url = base.replace("http", "ws", 1) + f"/ws/orders/{account}?api_key={key}"
        connected, connect_s = 0, 0.0
        if args.ws_clients:
            fleet = WsFleet(ws_url, args.ws_clients, args.ws_procs)
            connected, connect_s = fleet.wait_ready()
            print(f"ws: {connected}/{args.ws_clients} clients connected (snapshot received) in {connect_s:.1f} s",
                  flush=True)
            start_seq = probe_seq(ws_url)
        threads += [threading.Thread(target=order_loop, args=(base, key, account, symbols, stats, stop, i), daemon=True)
                    for i in range(args.order_threads)]
        threads.append(threading.Thread(target=batch_loop, daemon=True,
                                        args=(base, key, account, symbols, stats, stop, args.batch_interval)))
        memory.mark()
        own_cpu_before = time.process_time()
        started, started_epoch = time.monotonic(), time.time()
        for thread in threads:
            thread.start()
        deadline = started + args.duration
        while not stop.wait(min(1.0, max(0.0, deadline - time.monotonic()))) and time.monotonic() < deadline:
            if launcher and not launcher.alive():
                print(f"the stack exited (launcher status {launcher.process.returncode}) after "
                      f"{time.monotonic() - started:.1f} s; see its output", flush=True)
                break
        stop.set()
        elapsed = time.monotonic() - started
        for thread in threads:
            thread.join(timeout=20)
        own_cpu = time.process_time() - own_cpu_before
        memory.sample()
        cpu_wall = time.monotonic() - started
        if fleet:
            time.sleep(2.0)  # updates of the last orders (fills) are still being published
            end_seq = probe_seq(ws_url) if start_seq is not None else None
            ws_results = fleet.stop(start_seq, end_seq)
    finally:
        stop.set()
        if fleet:
            fleet.kill()
        if launcher:
            launcher.stop()

    orders, batches = stats.status["order"], stats.status["batch"]
    accepted = sum(n for s, n in orders.items() if isinstance(s, int) and s < 300)
    print(f"\n== {elapsed:.1f} s")
    print(f"orders:  {sum(orders.values())} sent, {accepted} accepted = {accepted / elapsed:.1f}/s; statuses {dict(orders)}")
    print(f"         latency {percentiles(stats.latency['order'])}")
    print(f"batches: {sum(batches.values())} sent; statuses {dict(batches)}")
    print(f"         latency {percentiles(stats.latency['batch'])}")

    errors = Counter(stats.errors)
    if ws_results:
        messages, latency, received_at, received, lags = Counter(), array("d"), array("d"), [], array("d")
        for result in ws_results:
            messages.update(result["messages"])
            errors.update(result["errors"])
            latency.extend(result["latency"])
            received_at.extend(result["received_at"])
            received.extend(result["received"])
            lags.extend(result["lags"])
        reconnects = sum(r["reconnects"] for r in ws_results)
        print(f"ws:      {args.ws_clients} clients (aiohttp) in {len(ws_results)} process(es); {connected} connected "
              f"in {connect_s:.1f} s before the load; reconnects {reconnects}; messages {dict(messages)}")
        if start_seq is not None and end_seq is not None:
            published = end_seq - start_seq
            ordered = sorted(received)
            total = sum(received)
            share = total / (published * len(received)) * 100 if published and received else 0.0
            print(f"         updates published {published} (seq {start_seq} -> {end_seq}) = {published / elapsed:.1f}/s, "
                  f"to {len(received)} clients = {published * len(received) / elapsed:.0f} frames/s due; "
                  f"received per client min {ordered[0]} median {ordered[len(ordered) // 2]} max {ordered[-1]} "
                  f"= {share:.1f}% delivered; clients with all {published}: "
                  f"{sum(1 for n in received if n >= published)}")
        out_of_order = sum(r["out_of_order"] for r in ws_results)
        print(f"         updates arriving after a higher seq (out of order) {out_of_order} "
              f"= {100 * out_of_order / max(1, messages['order_update']):.1f}%, "
              f"duplicates {sum(r['duplicates'] for r in ws_results)}")
        print(f"         order update latency (message timestamp to receipt; stamp has ms resolution) "
              f"{percentiles(list(latency))}")
        for row in window_percentiles(received_at, latency, started_epoch, args.window):
            print(f"           {row}")
        lag_sorted = sorted(lags)
        for result in ws_results:
            print(f"         client process pid {result['pid']}: {result['clients']} clients, CPU {result['cpu']:.1f} s "
                  f"over {result['wall']:.1f} s = {100 * result['cpu'] / max(result['wall'], 1e-9):.0f}% of a core")
        if lag_sorted:
            print(f"         client event-loop lag (50 ms timer overshoot): p50 {lag_sorted[len(lag_sorted) // 2] * 1000:.1f} ms "
                  f"p99 {lag_sorted[min(len(lag_sorted) - 1, int(0.99 * len(lag_sorted)))] * 1000:.1f} ms "
                  f"max {lag_sorted[-1] * 1000:.1f} ms")
    print(f"errors:  {sum(errors.values())}")
    for text, count in errors.most_common(15):
        print(f"   {count:6d}  {text}")
    used = memory.cpu_used()
    print(f"CPU (user+system) per process over {cpu_wall:.1f} s of load:")
    print(f"   {own_cpu:8.1f} s  {100 * own_cpu / cpu_wall:4.0f}%  load generator (this process: order and batch threads)")
    for pid, seconds in sorted(used.items(), key=lambda item: -item[1]):
        if seconds >= 0.05:
            print(f"   {seconds:8.1f} s  {100 * seconds / cpu_wall:4.0f}%  pid {pid:<7d} {memory.peak.get(pid, (0, '?'))[1][:90]}")
    print("peak memory (VmHWM) per process (RSS at load start -> at its end):")
    for pid, (hwm, cmd) in sorted(memory.peak.items(), key=lambda item: -item[1][0]):
        rss = (f"({memory.rss_start[pid] / 1024:.0f} -> {memory.rss_last.get(pid, 0) / 1024:.0f})"
               if pid in memory.rss_start else "")
        print(f"   {hwm / 1024:8.1f} MiB {rss:>13} pid {pid:<7d} {cmd[:90]}")


if __name__ == "__main__":
    main()
