"""WebSocket fan-out benchmark: N clients on ONE web process, order updates at R/s through Redis.

    .venv/bin/python bench/ws_fanout.py [--clients 1000] [--accounts 100] [--rate 200] [--seconds 15]
    .venv/bin/python bench/ws_fanout.py --watch-chains [--clients 2000] [--ticks-per-s 50000,20000,5000]
                                        [--web-workers 1] [--client-procs 2] [--seconds 10]

--watch-chains: option chain watchers at market scale (issue #22), see bench/ws_chains.py.

The web process runs as production runs it: `gunicorn -c gunicorn.conf.py -k gevent -w 1 wsgi:app`.
The clients (aiohttp, one asyncio loop) run in a separate process; each connects to
`/ws/orders/bench-{i % accounts}`, so every update fans out to clients/accounts
sockets. Updates are published with app.orders.updates.publish (the order worker's
path) and carry the publisher's clock; latency = client receipt - publish.
Prints p50/p90/p99/max latency, delivery counts, the CPU of the web worker and its
resident memory per connected socket (idle, and after the updates).
Uses a private PostgreSQL database and Redis DB like the tests (tests/support/environment.py).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ---- the client process ---------------------------------------------------
async def run_clients(url: str, key: str, clients: int, accounts: int, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    received = errors = 0
    ready = asyncio.Event()
    connected = 0

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal received, errors, connected
        try:
            async with session.ws_connect(f"{url}/ws/orders/bench-{i % accounts}", headers={"X-API-Key": key},
                                          heartbeat=None, autoping=True, max_msg_size=0) as ws:
                first = await ws.receive_json()
                assert first["type"] == "snapshot"
                connected += 1
                if connected == clients:
                    ready.set()
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    now = time.time()
                    body = json.loads(message.data)
                    if body.get("type") == "order_update":
                        latencies.append(now - body["data"]["sent_at"])
                        received += 1
        except Exception as exc:
            errors += 1
            if errors <= 3:
                print(f"client error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        for i in range(clients):
            tasks.append(asyncio.create_task(one(i, session)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # connect in waves, as clients arrive in life
        await asyncio.wait_for(ready.wait(), 120)
        print("READY", flush=True)
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()
    return {"connected": connected, "received": received, "errors": errors, "latencies": latencies}


def client_main(args) -> None:
    result = asyncio.run(run_clients(args.url, args.key, args.clients, args.accounts, args.listen))
    lat = result.pop("latencies")

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

    result.update(p50_ms=pct(0.50), p90_ms=pct(0.90), p99_ms=pct(0.99), max_ms=round(lat[-1] * 1000, 2) if lat else None)
    print("RESULT " + json.dumps(result), flush=True)


# ---- the orchestrator -------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    if "--watch-chains" in sys.argv[1:] or "--chain-client" in sys.argv[1:]:
        from bench.ws_chains import main as watch_chains

        watch_chains()
        return
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=100, help="clients are spread over this many accounts")
    parser.add_argument("--rate", type=float, default=200.0, help="order updates per second (all accounts)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--listen", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return

    from tests.support.environment import API_KEYS, configure_test_environment
    from tests.support.processes import GunicornServer

    env = configure_test_environment()  # a private database and Redis DB; sets the env vars
    processes: list = []
    try:
        from alembic import command

        from app.cli import alembic_config

        command.upgrade(alembic_config(), "head")
        web = GunicornServer(extra_args=["-k", "gevent", "-w", "1"],
                             env={"LOG_LEVEL": "WARNING", "WEB_WORKER_CONNECTIONS": str(args.clients + 500)})
        processes.append(web)
        web.start(timeout=60)
        url = web.url
        worker = (web.children() or [web.pid])[0]
        rss_empty = rss_kib(worker)

        listen = args.seconds + 3
        clients = subprocess.Popen([sys.executable, __file__, "--client", "--url", url, "--key", API_KEYS["admin"],
                                    "--clients", str(args.clients), "--accounts", str(args.accounts),
                                    "--listen", str(listen)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        processes.append(clients)
        connect_started = time.monotonic()
        line = clients.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"clients failed: {line!r}")
        connect_s = time.monotonic() - connect_started
        time.sleep(1.0)
        rss_idle = rss_kib(worker)

        from app.orders.updates import publish

        cpu_before, wall_before = cpu_seconds(worker), time.monotonic()
        interval, published, start = 1.0 / args.rate, 0, time.monotonic()
        while time.monotonic() - start < args.seconds:
            due = start + published * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            account = f"bench-{published % args.accounts}"
            publish(account, {"order_id": f"o{published}", "account_id": account, "status": "OPEN",
                              "filled_quantity": 0, "average_price": None, "sent_at": time.time()})
            published += 1
        publish_s = time.monotonic() - start
        time.sleep(1.0)  # let the last updates land
        cpu_used, wall = cpu_seconds(worker) - cpu_before, time.monotonic() - wall_before
        rss_after = rss_kib(worker)

        out = clients.stdout.read()
        clients.wait(60)
        result = json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])
        fanout = args.clients / args.accounts
        print(f"web: gunicorn -k gevent -w 1 (pid {worker}); clients: {result['connected']}/{args.clients} "
              f"connected in {connect_s:.1f}s over {args.accounts} accounts ({fanout:.0f} sockets per update)")
        print(f"published {published} updates in {publish_s:.1f}s ({published / publish_s:.0f}/s); "
              f"expected deliveries {int(published * fanout)}, received {result['received']}, "
              f"client errors {result['errors']}")
        print(f"latency publish -> client receipt: p50 {result['p50_ms']} ms, p90 {result['p90_ms']} ms, "
              f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms (target p99 <= 50 ms)")
        print(f"web worker CPU: {cpu_used:.2f}s over {wall:.1f}s = {100 * cpu_used / wall:.0f}% of one core")
        per_socket = 1 / max(1, result["connected"])  # KiB of the delta per connected socket
        print(f"web worker memory: {rss_empty / 1024:.0f} MiB before the clients, {rss_idle / 1024:.0f} MiB with them "
              f"idle ({(rss_idle - rss_empty) * per_socket:.0f} KiB per socket), {rss_after / 1024:.0f} MiB after "
              f"the updates ({(rss_after - rss_empty) * per_socket:.0f} KiB per socket)")
    finally:
        stop_all(processes)
        env.close()


def stop_all(processes: list, exit_wait_s: float = 0.0, term_wait_s: float = 15.0) -> None:
    """Stop the bench's processes, newest first: the web server its own way; the others get `exit_wait_s` to
    end by themselves (told to), then SIGTERM and `term_wait_s`, then SIGKILL."""
    from tests.support.processes import GunicornServer

    for process in reversed(processes):
        if isinstance(process, GunicornServer):
            process.stop()
            continue
        if process.poll() is not None:
            continue
        try:
            process.wait(exit_wait_s)
            continue
        except subprocess.TimeoutExpired:
            pass
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(term_wait_s)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
