"""Order execution figures: REST accept → broker ack latency, and sustained orders/s per account.

    python bench/orders.py [--latency-orders 60] [--burst 150]
    python bench/orders.py --accounts 20 [--seconds 60] [--rate 10] [--workers 6] [--web-workers 1]

Runs its own stack (bench/stack.py: private database and Redis DB, the paper
broker at zero latency, a Celery worker, the app on a real port).

- latency: orders sent one at a time, paced below the rate limit; the figure is
  the order's own `acked_at - accepted_at` (REST accept → broker ack), read from
  the database, so polling does not distort it. Targets: p50 ≤ 15 ms, p99 ≤ 50 ms.
- sustained: a burst of orders on a fresh account; the figure is acks per second
  between the first and the last ack, against Kite's 10 orders/s per account.
  Target: ≥ 95 % of the limit with zero 429s at the broker. (Kite's minute limit,
  ORDER_RATE_PER_MINUTE = 400, caps a burst at 400 orders per rolling minute; the
  burst stays under it.)
- fleet (`--accounts N`): N accounts at once, each at its full budget (bench/order_fleet.py says how
  the load is sent and which orders count as let through at once). Prints orders sent / accepted /
  acked, acks/s per account and in total, accept → ack of the orders let through at once and of those
  the budget deferred, the broker's 429s, duplicates (broker orders per tag and per service order) and
  the CPU of the web server, the worker, the broker and this client. Targets: every order acked,
  p99 accept → ack ≤ 100 ms for the orders let through at once, zero 429s, zero duplicates.
"""
from __future__ import annotations

import argparse
import statistics
import time

import requests

from stack import bench_stack

SECOND_ACCOUNT = {"api_key": "bench-sustained", "api_secret": "bench-secret-2", "access_token": "bench-token-2"}


def pick_option():
    from app.market.instruments import registry

    options = sorted((i for i in registry().all() if i.segment == "NFO-OPT" and i.instrument_type == "CE"),
                     key=lambda i: i.strike)
    return options[len(options) // 2]


def order_body(option) -> dict:
    return {"exchange": option.exchange, "tradingsymbol": option.tradingsymbol, "transaction_type": "BUY",
            "quantity": option.lot_size, "product": "NRML", "order_type": "MARKET"}


def acked(order_ids: list[str], timeout: float = 120.0) -> list:
    from sqlalchemy import select

    from app.core.db import new_session
    from app.models import Order

    deadline = time.monotonic() + timeout
    while True:
        with new_session() as session:
            rows = list(session.scalars(select(Order).where(Order.id.in_(order_ids))))
        if all(r.acked_at is not None for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-orders", type=int, default=60)
    parser.add_argument("--burst", type=int, default=150)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (Celery prefork concurrency); default 2, 6 with --accounts")
    parser.add_argument("--accounts", type=int, default=0, help="fleet mode: this many accounts at full budget")
    parser.add_argument("--seconds", type=float, default=60.0, help="fleet mode: how long they send")
    parser.add_argument("--rate", type=float, default=10.0, help="fleet mode: orders a second per account")
    parser.add_argument("--web-workers", type=int, default=1, help="fleet mode: gunicorn worker processes")
    args = parser.parse_args()
    if args.accounts:
        return fleet(args)
    args.workers = args.workers or 2

    with bench_stack(worker_concurrency=args.workers) as (app, server, broker, headers):
        from app import accounts as account_service
        from app.core.db import session_scope

        broker.add_account(**SECOND_ACCOUNT)
        with session_scope() as session:
            account_service.add_account(session, "sustained", **SECOND_ACCOUNT)
        option = pick_option()
        body = order_body(option)
        base = server.url
        http = requests.Session()

        # warm-up: connections, the instrument registry, the worker's broker client
        warm = [http.post(f"{base}/accounts/primary/orders", json=body, headers=headers).json()["id"] for _ in range(3)]
        acked(warm)

        rest_ms, ids = [], []
        for _ in range(args.latency_orders):
            started = time.perf_counter()
            response = http.post(f"{base}/accounts/primary/orders", json=body, headers=headers, timeout=10)
            rest_ms.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            ids.append(response.json()["id"])
            time.sleep(0.15)  # below 10/s: measure execution, not queueing behind the limiter
        rows = acked(ids)
        latencies = [(r.acked_at - r.accepted_at).total_seconds() * 1000 for r in rows if r.acked_at]
        print(f"latency: {len(latencies)}/{len(ids)} orders acked")
        print(f"  REST accept → broker ack  p50 {statistics.median(latencies):6.1f} ms   "
              f"p99 {percentile(latencies, 99):6.1f} ms   max {max(latencies):6.1f} ms   (targets 15 / 50 ms)")
        print(f"  REST answer (202) time    p50 {statistics.median(rest_ms):6.1f} ms   p99 {percentile(rest_ms, 99):6.1f} ms")

        limited_before = broker.state()["rate_limited"]
        burst_ids = []
        started = time.perf_counter()
        for _ in range(args.burst):
            response = http.post(f"{base}/accounts/sustained/orders", json=body, headers=headers, timeout=10)
            response.raise_for_status()
            burst_ids.append(response.json()["id"])
        submit_s = time.perf_counter() - started
        rows = acked(burst_ids)
        acks = sorted(r.acked_at for r in rows if r.acked_at)
        span = (acks[-1] - acks[0]).total_seconds()
        rate = (len(acks) - 1) / span if span > 0 else float("nan")
        attempts = [r.attempts for r in rows]
        limited = broker.state()["rate_limited"] - limited_before
        print(f"sustained: {len(acks)}/{len(burst_ids)} orders acked; enqueued in {submit_s:.2f} s")
        print(f"  {rate:.2f} orders/s per account = {rate / 10 * 100:.1f} % of Kite's 10/s "
              f"(target ≥ 95 %); broker 429s: {limited}; max attempts: {max(attempts)}")


def fleet(args) -> None:
    from order_fleet import run_fleet

    run_fleet(args, order_body, pick_option, acked)


if __name__ == "__main__":
    main()
