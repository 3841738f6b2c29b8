"""What the paper broker's RMS check costs per order as an account's positions grow.

    .venv/bin/python bench/sim_margins.py [--repeat 300]

Every placement runs it (sim/funds.py `Funds.shortfall`: the account's portfolio margin before and
after the order, over 17 scenarios per underlying), so it is on the order path of every test.
Prints the median and p90 in milliseconds for 0, 10, 50 and 200 open option positions.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.accounts import Accounts  # noqa: E402
from sim.funds import Funds  # noqa: E402
from sim.margins import Leg  # noqa: E402
from sim.market import Market  # noqa: E402
from sim.positions import Position  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    market = Market(seed=1)
    funds = Funds(market)
    account = Accounts("secret").get("bench")
    account.cash = 1e12
    options = [i for i in market.instruments if i.instrument_type in ("CE", "PE")]
    order = Leg(options[-1], -options[-1].lot_size, 100.0)
    print(f"{'positions':>9}  {'median ms':>9}  {'p90 ms':>7}")
    for count in (0, 10, 50, 200):
        account.positions.clear()
        for k, inst in enumerate(options[:count]):
            position = Position(inst.tradingsymbol, inst.exchange, inst.instrument_token, "NRML")
            position.add_fill("SELL" if k % 2 else "BUY", inst.lot_size, 100.0)
            account.positions[(inst.exchange, inst.tradingsymbol, "NRML")] = position
        timings = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            funds.shortfall(account, order)
            timings.append((time.perf_counter() - start) * 1000)
        timings.sort()
        print(f"{count:>9}  {statistics.median(timings):>9.3f}  {timings[int(0.9 * len(timings))]:>7.3f}")


if __name__ == "__main__":
    main()
