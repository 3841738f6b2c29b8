"""Batch latency versus one order and versus the same orders one after another.

The paper broker answers every REST call after 200 ms (as a slow day at Kite),
so the figures show whether legs really run in parallel.

    python bench/batch.py [--latency-ms 200] [--rounds 9]

Target: a 4-leg batch settles in ≤ 1.3 × one order's latency. A batch is settled when
every leg has the broker's verdict (Kite acknowledges an order before its risk checks,
so an acknowledged leg can still be rejected); one order is therefore timed two ways:
to the broker's acknowledgement, and to its verdict (like for like with the batch).
"""
from __future__ import annotations

import argparse
import statistics
import time

import requests

from stack import bench_stack

VERDICT = ("OPEN", "TRIGGER PENDING", "COMPLETE", "REJECTED", "CANCELLED")


def condor(instruments) -> list[dict]:
    options = [i for i in instruments if i.name == "NIFTY" and i.is_option]
    expiry = min(o.expiry for o in options)
    by_key = {(o.strike, o.instrument_type): o for o in options if o.expiry == expiry}
    strikes = sorted({k[0] for k in by_key})
    mid = len(strikes) // 2
    picks = [(strikes[mid - 4], "PE", "BUY"), (strikes[mid - 2], "PE", "SELL"),
             (strikes[mid + 2], "CE", "SELL"), (strikes[mid + 4], "CE", "BUY")]
    return [{"exchange": "NFO", "tradingsymbol": by_key[(k, t)].tradingsymbol, "transaction_type": side,
             "quantity": by_key[(k, t)].lot_size, "product": "NRML", "order_type": "MARKET"}
            for k, t, side in picks]


def place_and_time(base: str, headers: dict, order: dict) -> tuple[float, float]:
    """Seconds from the request to the broker's acknowledgement, and to its verdict."""
    started = time.perf_counter()
    response = requests.post(f"{base}/accounts/primary/orders", json=order, headers=headers, timeout=10)
    response.raise_for_status()
    order_id = response.json()["id"]
    acked = None
    while True:
        record = requests.get(f"{base}/orders/{order_id}", headers=headers, timeout=10).json()
        now = time.perf_counter() - started
        if acked is None and (record["broker_order_id"] or record["status"] not in ("QUEUED", "SUBMITTING")):
            acked = now
        if record["broker_status"] in VERDICT or record["status"] in ("COMPLETE", "REJECTED", "CANCELLED"):
            return acked or now, now
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    with bench_stack(worker_concurrency=4, broker_faults={"latency_ms": args.latency_ms}) as (app, server, broker, headers):
        from app.market.instruments import registry

        legs = condor(registry().all())
        base = server.url
        print(f"paper broker latency {args.latency_ms} ms per call; worker concurrency 4; {args.rounds} rounds")
        place_and_time(base, headers, legs[0])  # warm up connections and caches
        acks, verdicts, sequential, batch = [], [], [], []
        for round_no in range(args.rounds):
            # Each measurement starts with Kite's per-second order window free (10 orders/s per
            # account): the figures are about latency and parallelism, not rate limiting.
            time.sleep(1.1)
            ack, verdict = place_and_time(base, headers, legs[round_no % 4])
            acks.append(ack)
            verdicts.append(verdict)
            time.sleep(1.1)
            started = time.perf_counter()
            for leg in legs:
                place_and_time(base, headers, leg)
            sequential.append(time.perf_counter() - started)
            time.sleep(1.1)
            started = time.perf_counter()
            response = requests.post(f"{base}/accounts/primary/batch-orders", headers=headers, timeout=30,
                                     # The legs' path alone: the pre-trade margin check (on by default)
                                     # adds two broker calls before the batch is stored.
                                     json={"legs": legs, "wait": 20, "margin_check": False})
            elapsed = time.perf_counter() - started
            assert response.json()["status"] == "COMPLETED", response.json()
            batch.append(elapsed)
            print(f"  round {round_no + 1}: one order ack {ack * 1000:.0f} ms / verdict {verdict * 1000:.0f} ms, "
                  f"4 sequential {sequential[-1] * 1000:.0f} ms, 4-leg batch {batch[-1] * 1000:.0f} ms", flush=True)
        ack, verdict, seq, bat = (statistics.median(x) for x in (acks, verdicts, sequential, batch))
        print(f"median one order: request → broker ack {ack * 1000:.0f} ms, request → broker verdict {verdict * 1000:.0f} ms")
        print(f"median 4 orders one after another (each to its verdict): {seq * 1000:.0f} ms")
        print(f"median 4-leg batch (request → settled, every leg's verdict in): {bat * 1000:.0f} ms")
        print(f"batch / one order's verdict = {bat / verdict:.2f} (target ≤ 1.30, like for like); "
              f"batch / one order's ack = {bat / ack:.2f}; sequential / batch = {seq / bat:.2f}")


if __name__ == "__main__":
    main()
