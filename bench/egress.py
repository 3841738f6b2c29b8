"""What a per-account egress costs an order placement: the service path's kite client
(`app.broker.client.broker_client(account).place_order(...)`, as app/orders/execution.py calls
it) against the paper broker, for an account without egress and one whose egress is a source
address, calls interleaved so both see the same machine.

    python bench/egress.py [--orders 500] [--source-address 127.0.0.2]

Its own private database and Redis DB (tests/support/environment.py) and a paper broker at zero
latency without rate limits; the bound account's broker account accepts order requests only from
the source address, so every timed placement of it really left from there. Figures: p50, p90 and
p99 of each, and the difference at p50 and p90. Target: no more than 1 ms added at p50.

Also timed: the account version check that every `broker_client` call now makes (one Redis GET,
so that an egress change reaches every process at once), which accounts without egress pay too.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.environment import configure_test_environment, use_paper_broker  # noqa: E402
from tests.support.processes import PaperBroker  # noqa: E402

DIRECT = {"api_key": "bench-direct", "api_secret": "bench-secret-d", "access_token": "bench-token-d"}
BOUND = {"api_key": "bench-bound", "api_secret": "bench-secret-b", "access_token": "bench-token-b"}
WARM_UP = 20
TARGET_P50_MS = 1.0


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def placement(kite) -> dict:
    """A MARKET order of a mid-chain NIFTY call, as execution.placement_params sends it."""
    options = sorted((i for i in kite.instruments("NFO") if i["name"] == "NIFTY" and i["instrument_type"] == "CE"),
                     key=lambda i: i["strike"])
    option = options[len(options) // 2]
    return {"variety": "regular", "exchange": "NFO", "tradingsymbol": option["tradingsymbol"],
            "transaction_type": "BUY", "quantity": option["lot_size"], "product": "NRML",
            "order_type": "MARKET", "validity": "DAY", "market_protection": -1, "tag": "bench-egress"}


def timed_placement(account_id: str, params: dict) -> float:
    from app.broker.client import broker_client

    started = time.perf_counter()
    broker_client(account_id).place_order(**params)
    return (time.perf_counter() - started) * 1000


def timed_version_check(account_id: str) -> float:
    from app.broker import account_versions

    started = time.perf_counter()
    account_versions.current(account_id)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=500, help="timed placements per account")
    parser.add_argument("--source-address", default="127.0.0.2",
                        help="the bound account's egress (a local address other than the broker's 127.0.0.1)")
    args = parser.parse_args()

    environment = configure_test_environment()
    broker = PaperBroker(seed=3, accounts={a["api_key"]: (a["api_secret"], a["access_token"]) for a in (DIRECT, BOUND)},
                         rate_limits=False, cash=1e12, daily_expiry=False).start()
    try:
        from alembic import command

        from app import accounts as account_service
        from app.broker.client import broker_client
        from app.broker.egress import Egress
        from app.cli import alembic_config
        from app.core.db import session_scope

        command.upgrade(alembic_config(), "head")
        use_paper_broker(broker)
        broker.add_account(BOUND["api_key"], allowed_ips=[args.source_address])
        with session_scope() as session:
            account_service.add_account(session, "direct", **DIRECT)
            account_service.add_account(session, "bound", **BOUND,
                                        egress=Egress.checked(source_address=args.source_address))
        params = placement(broker_client("direct"))

        for _ in range(WARM_UP):  # connections open, caches filled, the broker's code paths warm
            timed_placement("direct", params)
            timed_placement("bound", params)
        timings: dict[str, list[float]] = {"direct": [], "bound": []}
        for i in range(args.orders):
            pair = ("direct", "bound") if i % 2 == 0 else ("bound", "direct")  # neither always goes first
            for account_id in pair:
                timings[account_id].append(timed_placement(account_id, params))
        version_checks = [timed_version_check("direct") for _ in range(args.orders)]
    finally:
        broker.stop()
        environment.close()

    print(f"order placement through broker_client(...).place_order, {args.orders} orders per account, interleaved")
    for account_id, label in (("direct", "no egress (default route)"),
                              ("bound", f"egress source_address {args.source_address}")):
        values = timings[account_id]
        print(f"  {label:<40} p50 {percentile(values, 50):6.3f} ms   p90 {percentile(values, 90):6.3f} ms   "
              f"p99 {percentile(values, 99):6.3f} ms")
    added = {q: percentile(timings["bound"], q) - percentile(timings["direct"], q) for q in (50, 90)}
    verdict = "met" if added[50] <= TARGET_P50_MS else "NOT met"
    print(f"  added by the egress: p50 {added[50]:+.3f} ms, p90 {added[90]:+.3f} ms "
          f"(target: at most +{TARGET_P50_MS:.0f} ms at p50: {verdict})")
    print(f"  account version check inside each broker_client call (both accounts): "
          f"p50 {percentile(version_checks, 50):.3f} ms, p90 {percentile(version_checks, 90):.3f} ms")


if __name__ == "__main__":
    main()
