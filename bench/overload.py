"""Admission under overload: a burst at N× one account's order rate, and what becomes of it.

    python bench/overload.py [--times 10] [--seconds 40] [--workers 4] [--max-queue-s 30]

Runs its own stack (bench/stack.py: private database and Redis DB, the paper broker, a Celery
worker, gunicorn) with the production defaults — ORDER_RATE_PER_SECOND 10, ORDER_RATE_PER_MINUTE 400,
ORDER_MAX_QUEUE_S 30, ORDER_BACKLOG_MAX derived (200) — and the reconciler run every 5 s from here,
as beat would. One account is sent `--times` × its sustained placement rate (400/min = 6.67/s) for
`--seconds` seconds by eight clients, then the run waits until every accepted order is final.

It prints the placements per rolling minute achieved against the budget (ORDER_RATE_PER_MINUTE), the
p50/p90/max of placed − accepted (acked_at − accepted_at) of the placed orders, how many were refused
(429 order_backlog_full), EXPIRED or placed after their expiry (must be 0), the reconciler's re-enqueues,
and the most tasks the worker's queue held (waiting in Redis + held for later by the worker).
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from stack import bench_stack

BURST_ACCOUNT = {"api_key": "bench-overload", "api_secret": "bench-secret-o", "access_token": "bench-token-o"}


def pick_option():
    from app.market.instruments import registry

    options = sorted((i for i in registry().all() if i.segment == "NFO-OPT" and i.instrument_type == "CE"),
                     key=lambda i: i.strike)
    return options[len(options) // 2]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def rows_of(order_ids: list[str]) -> list:
    from sqlalchemy import select

    from app.core.db import new_session
    from app.models import Order

    rows = []
    with new_session() as session:
        for start in range(0, len(order_ids), 500):
            rows += list(session.scalars(select(Order).where(Order.id.in_(order_ids[start:start + 500]))))
    return rows


class Sampler(threading.Thread):
    """Every second: the worker's queue (tasks waiting in Redis, and those the worker holds for later:
    deferred until their send slot, or retries), and a reconciliation pass every 5 s, as beat runs it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.max_waiting = self.max_held = 0
        self.requeued = 0

    def run(self) -> None:
        from app.core.redis_client import get_redis
        from app.orders.reconciliation import reconcile_all

        redis, last_pass = get_redis(), 0.0
        while not self.stop.wait(1.0):
            self.max_waiting = max(self.max_waiting, int(redis.llen("orders")))
            self.max_held = max(self.max_held, int(redis.hlen("unacked")))
            if time.monotonic() - last_pass >= 5:
                last_pass = time.monotonic()
                self.requeued += sum(s["requeued"] for s in reconcile_all().values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--times", type=float, default=10.0, help="the burst, in multiples of the sustained rate")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-queue-s", type=float, default=30.0)
    args = parser.parse_args()

    env = {"ORDER_MAX_QUEUE_S": str(args.max_queue_s), "LOG_LEVEL": "WARNING"}
    with bench_stack(worker_concurrency=args.workers, env=env) as (app, server, broker, headers):
        from app import accounts as account_service
        from app.core.config import get_settings
        from app.core.db import session_scope
        from app.orders.admission import backlog_max, placement_rate

        broker.add_account(**BURST_ACCOUNT)
        with session_scope() as session:
            account_service.add_account(session, "overload", **BURST_ACCOUNT)
        settings = get_settings()
        option = pick_option()
        body = {"exchange": option.exchange, "tradingsymbol": option.tradingsymbol, "transaction_type": "BUY",
                "quantity": option.lot_size, "product": "NRML", "order_type": "MARKET"}
        url = f"{server.url}/accounts/overload/orders"
        rate = placement_rate(settings)
        offered = args.times * rate
        local = threading.local()

        def send(due: float):
            time.sleep(max(0.0, due - time.monotonic()))
            http = getattr(local, "http", None) or requests.Session()
            local.http = http
            response = http.post(url, json=body, headers=headers, timeout=30)
            return response.status_code, (response.json().get("id") if response.status_code == 202 else None)

        sampler = Sampler()
        sampler.start()
        started = time.monotonic()
        count = int(offered * args.seconds)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, [started + i / offered for i in range(count)]))
        sent_s = time.monotonic() - started
        accepted = [order_id for status, order_id in answers if status == 202]
        refused = sum(1 for status, _ in answers if status == 429)
        deadline = time.monotonic() + args.max_queue_s + 30
        while True:
            rows = rows_of(accepted)
            if all(r.status not in ("QUEUED", "SUBMITTING") for r in rows) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        sampler.stop.set()
        sampler.join()

        placed = [r for r in rows if r.acked_at is not None]
        expired = [r for r in rows if r.status == "EXPIRED"]
        late = [r for r in placed if r.acked_at > r.expires_at]
        acks = sorted(r.acked_at.timestamp() for r in placed)
        per_minute = max((sum(1 for a in acks if t <= a < t + 60) for t in acks), default=0)
        waits = [(r.acked_at - r.accepted_at).total_seconds() for r in placed]
        print(f"burst: {count} orders in {sent_s:.1f} s ({count / sent_s:.1f}/s = {args.times:g}× the sustained "
              f"{rate:.2f}/s of ORDER_RATE_PER_MINUTE {settings.order_rate_per_minute:g}); "
              f"ORDER_MAX_QUEUE_S {settings.order_max_queue_s:g}, ORDER_BACKLOG_MAX {backlog_max(settings)}")
        print(f"  accepted {len(accepted)}, refused 429 {refused}, other answers "
              f"{sum(1 for status, _ in answers if status not in (202, 429))}")
        no_slot = sum(1 for r in expired if "no send slot" in (r.error or ""))
        print(f"  placed {len(placed)}, EXPIRED {len(expired)} ({no_slot} refused a slot by the limiter, "
              f"{len(expired) - no_slot} reached by their task too late), still unsent "
              f"{len(rows) - len(placed) - len(expired)}, placed after their expiry {len(late)}")
        print(f"  placements per rolling minute: {per_minute} of the budget {settings.order_rate_per_minute:g} "
              f"({per_minute / settings.order_rate_per_minute * 100:.0f} %)")
        if waits:
            print(f"  placed − accepted: p50 {statistics.median(waits):.2f} s, p90 {percentile(waits, 90):.2f} s, "
                  f"max {max(waits):.2f} s")
        print(f"  worker queue: at most {sampler.max_waiting} tasks waiting in Redis, {sampler.max_held} held for "
              f"later (deferred to a send slot or a retry); reconciler re-enqueued {sampler.requeued}; "
              f"broker 429s {broker.state()['rate_limited_by_class'].get('order', 0)}")


if __name__ == "__main__":
    main()
