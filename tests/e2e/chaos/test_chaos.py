"""Chaos: orders and batches while workers die, Redis restarts and the broker misbehaves.

Then the service's invariants hold (README, "How the promises are kept"): every accepted request has exactly one broker
order or is dead-lettered with a reason; every rolled-back batch is flat at the
broker; no order record is lost; the stream resumed. Sizes from the environment:
`make chaos` runs CHAOS_ORDERS=500 CHAOS_BATCHES=50; CI a reduced run.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import redis
import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app.models import Batch, Order, OrderEvent
from tests.e2e.chaos.stack import ACCOUNTS, ADMIN_KEY, ChaosStack

ORDERS = int(os.environ.get("CHAOS_ORDERS", "120"))
BATCHES = int(os.environ.get("CHAOS_BATCHES", "12"))
SEED = int(os.environ.get("CHAOS_SEED", "7"))
DURATION_S = float(os.environ.get("CHAOS_DURATION_S", "30"))  # requests are spread over this, faults too
SETTLE_TIMEOUT_S = float(os.environ.get("CHAOS_SETTLE_TIMEOUT_S", "240"))
HEADERS = {"X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def stack(test_env):
    chaos = ChaosStack(test_env.database_url).start()
    yield chaos
    chaos.stop()


class Client:
    """A trading program: retries with the same Idempotency-Key on errors, as clients should."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.statuses: Counter = Counter()
        self.lock = threading.Lock()

    def post(self, path: str, body: dict, key: str, attempts: int = 8) -> dict | None:
        for attempt in range(attempts):
            try:
                response = requests.post(self.base + path, json=body, timeout=15,
                                         headers={**HEADERS, "Idempotency-Key": key})
                with self.lock:
                    self.statuses[response.status_code] += 1
                if response.status_code < 300:
                    return response.json()
                if response.status_code < 500 and response.status_code != 429:
                    raise AssertionError(f"{path} refused: {response.status_code} {response.text}")
            except requests.RequestException:
                with self.lock:
                    self.statuses["connection error"] += 1
            time.sleep(min(2.0, 0.2 * 2 ** attempt))
        return None


class Monkey(threading.Thread):
    """Injects one random fault every couple of seconds until stopped."""

    def __init__(self, stack: ChaosStack, symbols: list[str], doomed: str, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.stack, self.symbols, self.doomed, self.rng = stack, symbols, doomed, rng
        self.done = threading.Event()
        self.injected: Counter = Counter()
        self.timeline: list[tuple[datetime, str]] = []  # when each fault struck, for the report

    def run(self) -> None:
        actions = [self.kill_worker, self.restart_redis, self.timeout_after_accept, self.broker_5xx,
                   self.broker_429, self.drop_ws, self.reject_a_symbol]
        self.rng.shuffle(actions)  # every kind of fault, in a seeded order, round after round
        n = 0
        while not self.done.wait(self.rng.uniform(1.5, 3.0)):
            action = actions[n % len(actions)]
            n += 1
            try:
                self.timeline.append((datetime.now(timezone.utc), action.__name__))
                action()
                self.injected[action.__name__] += 1
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                self.injected[f"{action.__name__} (failed: {type(exc).__name__})"] += 1

    def kill_worker(self):
        self.stack.kill_worker(self.rng.choice(self.stack.workers()))

    def restart_redis(self):
        self.stack.restart_redis()

    def timeout_after_accept(self):
        self.stack.broker.set_faults(accept_then_timeout_next=2, timeout_s=4)

    def broker_5xx(self):
        self.stack.broker.set_faults(error_next=3, error_status=503)

    def broker_429(self):
        self.stack.broker.set_faults(error_next=3, error_status=429)

    def drop_ws(self):
        self.stack.broker.set_faults(drop_ws=True)

    def reject_a_symbol(self):
        self.stack.broker.set_faults(reject_symbols=[self.doomed, self.rng.choice(self.symbols)])
        time.sleep(1.0)
        self.stack.broker.set_faults(reject_symbols=[self.doomed])


def nifty_options(stack: ChaosStack) -> list[dict]:
    rows = requests.get(f"{stack.url}/instruments?name=NIFTY&limit=5000", headers=HEADERS, timeout=10).json()
    options = [r for r in rows if r["instrument_type"] in ("CE", "PE")]
    expiry = min(r["expiry"] for r in options)
    return [r for r in options if r["expiry"] == expiry]


def condor(options: list[dict], rng: random.Random) -> list[dict]:
    strikes = sorted({o["strike"] for o in options})
    by_key = {(o["strike"], o["instrument_type"]): o for o in options}
    mid = rng.randint(6, len(strikes) - 7)
    picks = [(mid - 4, "PE", "BUY"), (mid - 2, "PE", "SELL"), (mid + 2, "CE", "SELL"), (mid + 4, "CE", "BUY")]
    return [{"exchange": "NFO", "tradingsymbol": by_key[(strikes[i], t)]["tradingsymbol"], "transaction_type": side,
             "quantity": by_key[(strikes[i], t)]["lot_size"], "product": "NRML", "order_type": "MARKET"}
            for i, t, side in picks]


def test_invariants_hold_under_chaos(stack):
    rng = random.Random(SEED)
    options = nifty_options(stack)
    client = Client(stack.url)
    accounts = list(ACCOUNTS)

    # Every third batch has a leg on a symbol the broker rejects all run long: those must roll back.
    doomed = options[len(options) // 2]["tradingsymbol"]
    stack.broker.set_faults(reject_symbols=[doomed])
    tradable = [o for o in options if o["tradingsymbol"] != doomed]
    order_requests = []
    for n in range(ORDERS):
        option = rng.choice(tradable)
        body = {"exchange": "NFO", "tradingsymbol": option["tradingsymbol"], "quantity": option["lot_size"],
                "transaction_type": rng.choice(["BUY", "SELL"]), "product": "NRML", "order_type": "MARKET"}
        order_requests.append((rng.choice(accounts), body, f"chaos-order-{SEED}-{n}"))
    batch_requests = []
    for n in range(BATCHES):
        legs = condor(options, rng)
        while any(l["tradingsymbol"] == doomed for l in legs):
            legs = condor(options, rng)
        if n % 3 == 0:
            legs[rng.randrange(4)]["tradingsymbol"] = doomed
        batch_requests.append((rng.choice(accounts), legs, f"chaos-batch-{SEED}-{n}"))
    monkey = Monkey(stack, [o["tradingsymbol"] for o in tradable], doomed, rng)
    accepted_orders: dict[str, str] = {}
    accepted_batches: dict[str, str] = {}
    requests_in_order = [("order", r) for r in order_requests] + [("batch", r) for r in batch_requests]
    rng.shuffle(requests_in_order)
    started = time.monotonic()
    monkey.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = []
            for n, (kind, (account, body, key)) in enumerate(requests_in_order):
                # Spread the requests over the run so faults land while work is in flight.
                time.sleep(max(0.0, started + n * DURATION_S / len(requests_in_order) - time.monotonic()))
                if kind == "order":
                    futures.append((kind, key, pool.submit(client.post, f"/accounts/{account}/orders", body, key)))
                else:
                    futures.append((kind, key, pool.submit(client.post, f"/accounts/{account}/batch-orders",
                                                           {"legs": body, "wait": 0}, key)))
            for kind, key, future in futures:
                answer = future.result()
                if answer and kind == "order":
                    accepted_orders[key] = answer["id"]
                elif answer:
                    accepted_batches[key] = answer["batch_id"]
            # Faults go on a little after the last request, while its work is in flight.
            time.sleep(3.0)
    finally:
        monkey.done.set()
        monkey.join()
    load_s = time.monotonic() - started
    stack.broker.clear_faults()

    engine = create_engine(stack.env["DATABASE_URL"])
    settled_at = _wait_until_settled(engine)
    broker_orders = {name: stack.broker.orders(key) for name, (key, _, _) in ACCOUNTS.items()}
    by_tag = Counter(o.get("tag") for rows in broker_orders.values() for o in rows)
    broker_by_id = {str(o["order_id"]): o for rows in broker_orders.values() for o in rows}

    checks: dict[str, tuple[bool, str]] = {}
    with Session(engine) as session:
        orders = list(session.scalars(select(Order)))
        batches = list(session.scalars(select(Batch)))
        known_ids = {o.id for o in orders}

        lost = [i for i in list(accepted_orders.values()) if i not in known_ids]
        checks["no accepted order lost"] = (not lost, f"{len(accepted_orders)} accepted, {len(lost)} missing")
        checks["one order per idempotency key"] = (
            len(set(accepted_orders.values())) == len(accepted_orders),
            f"{len(accepted_orders)} keys → {len(set(accepted_orders.values()))} orders")

        unsettled = [o.id for o in orders if o.status in ("QUEUED", "SUBMITTING")]
        checks["every order settled"] = (not unsettled, f"{len(unsettled)} still queued/submitting")

        wrong = []
        for o in orders:
            n = by_tag.get(o.tag, 0)
            if o.status == "DEAD_LETTER":
                if n > 1 or not o.error:
                    wrong.append((o.id, o.status, n, o.error))
            elif o.status == "EXPIRED":  # not sent by its expiry: never placed, late or otherwise
                if n != 0 or not o.error:
                    wrong.append((o.id, o.status, n, o.error))
            elif n != 1:
                wrong.append((o.id, o.status, n, o.error))
        statuses = Counter(o.status for o in orders)
        # Orders that never reached the broker (expired, or still waiting) say why in their events.
        stranded = {o.id: [(e.at, e.from_status, e.to_status, e.attempt, e.detail) for e in
                           session.scalars(select(OrderEvent).where(OrderEvent.order_id == o.id)
                                           .order_by(OrderEvent.id))]
                    for o in orders if o.status in ("EXPIRED", "QUEUED", "SUBMITTING")}
        checks["exactly one broker order per order (or dead-lettered with reason, or expired and never placed)"] = (
            not wrong, f"{len(orders)} orders {dict(statuses)}; violations {wrong[:5]}")

        missing_batches = [b for b in accepted_batches.values() if b not in {x.id for x in batches}]
        running = [b.id for b in batches if b.status == "RUNNING"]
        checks["every batch recorded and settled"] = (not missing_batches and not running,
                                                      f"{len(batches)} batches {dict(Counter(b.status for b in batches))}")

        not_flat = []
        for batch in batches:
            if batch.status != "ROLLED_BACK":
                continue
            net = defaultdict(int)
            for o in orders:
                row = broker_by_id.get(o.broker_order_id or "")
                if o.batch_id == batch.id and row:
                    net[row["tradingsymbol"]] += (1 if row["transaction_type"] == "BUY" else -1) * int(
                        row.get("filled_quantity") or 0)
            if any(net.values()):
                not_flat.append((batch.id, dict(net)))
        rolled = sum(1 for b in batches if b.status == "ROLLED_BACK")
        doomed_batches = sum(1 for _, legs, _ in batch_requests if any(l["tradingsymbol"] == doomed for l in legs))
        checks["every rolled-back batch flat at the broker"] = (
            not not_flat and rolled >= doomed_batches, f"{rolled} rolled back ({doomed_batches} doomed); {not_flat[:3]}")
    engine.dispose()

    stream_ok, stream_note = _stream_resumed(stack)
    checks["stream resumed"] = (stream_ok, stream_note)
    server_errors = {k: v for k, v in client.statuses.items() if isinstance(k, int) and k >= 500 and k != 503}
    checks["no 5xx but 503 during outages"] = (not server_errors, f"answers {dict(client.statuses)}")

    print(f"\nChaos run: {ORDERS} orders, {BATCHES} batches, seed {SEED}, load {load_s:.0f} s, "
          f"settled {settled_at:.0f} s later")
    print(f"{'fault injected':<40}count")
    for fault, count in sorted(monkey.injected.items()):
        print(f"  {fault:<38}{count}")
    print(f"{'invariant':<70}result")
    for name, (ok, note) in checks.items():
        print(f"  {name:<68}{'PASS' if ok else 'FAIL'}  {note}")
    _print_stranded(stranded, monkey.timeline)
    assert sum(v for k, v in monkey.injected.items() if "failed" not in k) >= 3, monkey.injected
    failed = [name for name, (ok, _) in checks.items() if not ok]
    assert not failed, f"invariants broken: {failed}; logs in {stack.logdir}"


def _print_stranded(stranded: dict, timeline: list) -> None:
    """The faults' times and the events of each order that never reached the broker, side by side."""
    if not stranded:
        return
    print("faults: " + ", ".join(f"{at:%H:%M:%S.%f}"[:-3] + f" {name}" for at, name in timeline))
    for order_id, events in stranded.items():
        print(f"order {order_id}:")
        for at, before, after, attempt, detail in events:
            print(f"  {at:%H:%M:%S.%f}"[:-3] + f" {before} → {after} attempt {attempt} {detail}")


def _wait_until_settled(engine) -> float:
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT_S:
        with Session(engine) as session:
            busy = session.scalar(select(Order.id).where(Order.status.in_(["QUEUED", "SUBMITTING"])).limit(1))
            running = session.scalar(select(Batch.id).where(Batch.status == "RUNNING").limit(1))
        if busy is None and running is None:
            return time.monotonic() - started
        time.sleep(1.0)
    return time.monotonic() - started


def _stream_resumed(stack: ChaosStack) -> tuple[bool, str]:
    if not stack.procs["stream"].alive():
        return False, "stream process died"
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    # Nothing was subscribed by the chaos run: subscribe the index now and expect its ticks.
    requests.post(f"{stack.url}/subscriptions", headers=HEADERS, timeout=10,
                  json={"instrument_token": 256265, "requested_mode": "QUOTE"})
    pubsub.psubscribe("ticker:nifty:*")
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and message["type"] == "pmessage":
                batch = json.loads(message["data"])
                return True, f"ticks on {message['channel'].decode()} ({batch['count']} in a batch)"
        return False, "no ticks within 20 s"
    finally:
        pubsub.close()
