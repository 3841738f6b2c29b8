"""Load: single orders, batches and WebSocket clients against a running stack, for a duration.

    .venv/bin/python bench/load.py --base-url http://127.0.0.1:5000 --api-key KEY [--account primary]
    .venv/bin/python bench/load.py            # starts its own stack (python -m launcher) and stops it after

Mixes, for --duration seconds (default 120):
  * --order-threads threads placing one order each time (POST /accounts/{id}/orders, Idempotency-Key);
  * one thread placing a 2-leg batch every --batch-interval s (POST /accounts/{id}/batch-orders);
  * --ws-clients WebSocket clients on /ws/orders/{id} counting order updates and their latency.
Prints throughput, latency percentiles, HTTP statuses and errors, WebSocket message counts and
update latency, and the peak resident memory (VmHWM from /proc) of every service process.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE_MARKERS = ("gunicorn", "celery", "workers.stream", "-m sim", "flower", "valkey", "launcher")


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
        self.latency: dict[str, list[float]] = {"order": [], "batch": [], "ws_update": []}
        self.status: dict[str, Counter] = {"order": Counter(), "batch": Counter()}
        self.errors: Counter = Counter()
        self.ws_messages: Counter = Counter()

    def request(self, kind: str, seconds: float, status) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.status[kind][status] += 1


# --- the stack -------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_stack(port: int) -> subprocess.Popen:
    env = dict(os.environ, PORT=str(port))
    log = tempfile.NamedTemporaryFile(prefix="load-launcher-", suffix=".log", delete=False)
    print(f"launcher output: {log.name}", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "launcher"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"launcher exited with {proc.returncode}")
        try:
            if requests.get(f"{base}/health", timeout=2).json().get("status") in ("ok", "degraded"):
                return proc
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    stop_stack(proc)
    raise SystemExit("the stack did not become healthy within 180 s")


def stop_stack(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


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


class MemoryWatch(threading.Thread):
    def __init__(self, root_pid: int | None, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.stop = root_pid, stop
        self.peak: dict[int, tuple[int, str]] = {}

    def sample(self) -> None:
        for pid, cmd in service_processes(self.root_pid).items():
            try:
                _, hwm = memory_kib(pid)
            except OSError:
                continue
            if hwm > self.peak.get(pid, (0, ""))[0]:
                self.peak[pid] = (hwm, cmd)

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


def ws_client(base, key, account, stats, stop):
    import websocket  # websocket-client (requirements-dev.txt)

    url = base.replace("http", "ws", 1) + f"/ws/orders/{account}?api_key={key}"
    while not stop.is_set():
        try:
            ws = websocket.create_connection(url, timeout=2)
        except Exception as exc:
            stats.errors[f"ws connect {type(exc).__name__}"] += 1
            stop.wait(1)
            continue
        try:
            while not stop.is_set():
                try:
                    text = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                received = time.time()
                stats.ws_messages["messages"] += 1
                try:
                    message = json.loads(text)
                except ValueError:
                    continue
                stats.ws_messages[message.get("type", "?")] += 1
                stamp = message.get("timestamp")
                if message.get("type") == "order_update" and stamp:
                    sent = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                    with stats.lock:
                        stats.latency["ws_update"].append(max(0.0, received - sent))
        except Exception as exc:
            stats.errors[f"ws {type(exc).__name__}"] += 1
        finally:
            ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url")
    parser.add_argument("--api-key")
    parser.add_argument("--account", help="account to trade on (default: the first of GET /accounts)")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--order-threads", type=int, default=4)
    parser.add_argument("--batch-interval", type=float, default=1.0)
    parser.add_argument("--ws-clients", type=int, default=20)
    args = parser.parse_args()

    launcher = None
    base, key = args.base_url, args.api_key
    if not base:
        port = _free_port()
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
              f"batch_every={args.batch_interval}s ws_clients={args.ws_clients} symbols={len(symbols)}", flush=True)

        memory.start()
        threads += [threading.Thread(target=ws_client, args=(base, key, account, stats, stop), daemon=True)
                    for _ in range(args.ws_clients)]
        threads += [threading.Thread(target=order_loop, args=(base, key, account, symbols, stats, stop, i), daemon=True)
                    for i in range(args.order_threads)]
        threads.append(threading.Thread(target=batch_loop, daemon=True,
                                        args=(base, key, account, symbols, stats, stop, args.batch_interval)))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        deadline = started + args.duration
        while not stop.wait(min(1.0, max(0.0, deadline - time.monotonic()))) and time.monotonic() < deadline:
            if launcher and launcher.poll() is not None:
                print(f"the stack exited (launcher status {launcher.returncode}) after "
                      f"{time.monotonic() - started:.1f} s; see its output", flush=True)
                break
        stop.set()
        elapsed = time.monotonic() - started
        for thread in threads:
            thread.join(timeout=20)
        memory.sample()
    finally:
        stop.set()
        if launcher:
            stop_stack(launcher)

    orders, batches = stats.status["order"], stats.status["batch"]
    accepted = sum(n for s, n in orders.items() if isinstance(s, int) and s < 300)
    print(f"\n== {elapsed:.1f} s")
    print(f"orders:  {sum(orders.values())} sent, {accepted} accepted = {accepted / elapsed:.1f}/s; statuses {dict(orders)}")
    print(f"         latency {percentiles(stats.latency['order'])}")
    print(f"batches: {sum(batches.values())} sent; statuses {dict(batches)}")
    print(f"         latency {percentiles(stats.latency['batch'])}")
    print(f"ws:      {args.ws_clients} clients, messages {dict(stats.ws_messages)}")
    print(f"         order update latency (message timestamp to receipt) {percentiles(stats.latency['ws_update'])}")
    print(f"errors:  {sum(stats.errors.values())}")
    for text, count in stats.errors.most_common(10):
        print(f"   {count:6d}  {text}")
    print("peak memory (VmHWM) per process:")
    for pid, (hwm, cmd) in sorted(memory.peak.items(), key=lambda item: -item[1][0]):
        print(f"   {hwm / 1024:8.1f} MiB  pid {pid:<7d} {cmd[:100]}")


if __name__ == "__main__":
    main()
