"""Command-line settings of the paper broker."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from .faults import FaultSettings

DEFAULT_API_SECRET = "paper-secret"


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0                      # 0: pick a free port (the start-up line says which)
    seed: int = 1
    universe: str = "small"            # small: NIFTY + BANKNIFTY (652); fno: NSE's F&O segment (~96,000)
    tick_rate: float = 1.0             # ticks/s per subscribed instrument, on each connection
    market_step_ms: float = 250.0      # how often the market moves and orders are matched
    rate: float = 0.10                 # risk-free rate used to price options (no dividends)
    strikes_each_side: int = 40
    postback_url: str | None = None
    strict_auth: bool = False
    daily_expiry: bool = True          # access tokens end at the next 06:00 IST, as Kite's do
    api_secret: str = DEFAULT_API_SECRET
    accounts: list = field(default_factory=list)   # "KEY:SECRET[:ACCESS_TOKEN]"
    orders_per_second: int = 10
    orders_per_minute: int = 400          # Kite's 2026 figure (it was 200)
    orders_per_day: int = 5000
    quotes_per_second: int = 1
    historical_per_second: int = 3
    other_per_second: int = 10
    rate_limits: bool = True
    frozen: bool = False
    market_hours: bool = False         # Kite's NSE session for orders (sim/market_hours.py); off: around the clock
    cash: float = 1_000_000.0          # opening funds of every account (₹10,00,000)
    stamp_token: int | None = None     # benchmarks: this instrument's last_quantity = send time (epoch ms mod 2^32)
    faults: dict = field(default_factory=dict)


def parse_args(argv=None) -> SimConfig:
    p = argparse.ArgumentParser(prog="python -m sim", description="Paper broker speaking Kite Connect v3.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--universe", choices=("small", "fno"), default="small",
                   help="small: NIFTY and BANKNIFTY chains (652 instruments); fno: every NSE F&O underlying "
                        "with futures and chains (~96,000 instruments, each ticking at its own rate)")
    p.add_argument("--tick-rate", type=float, default=1.0,
                   help="ticks per second for each subscribed instrument on each connection, on average over "
                        "the universe (instrument i: rate x its liquidity weight; all weights 1 in small)")
    p.add_argument("--market-step-ms", type=float, default=250.0)
    p.add_argument("--rate", type=float, default=0.10, help="risk-free rate for option prices")
    p.add_argument("--strikes-each-side", type=int, default=40, help="strikes listed above and below the ATM")
    p.add_argument("--postback-url")
    p.add_argument("--strict-auth", action="store_true",
                   help="accept only access tokens issued by /session/token or --account")
    p.add_argument("--no-daily-expiry", action="store_true",
                   help="access tokens do not end at 06:00 IST (expire_sessions and logout still end them)")
    p.add_argument("--api-secret", default=DEFAULT_API_SECRET,
                   help="api_secret of accounts not registered with --account")
    p.add_argument("--account", action="append", default=[], metavar="KEY:SECRET[:ACCESS_TOKEN]")
    p.add_argument("--orders-per-second", type=int, default=10)
    p.add_argument("--orders-per-minute", type=int, default=400, help="placements per minute per api key")
    p.add_argument("--orders-per-day", type=int, default=5000, help="placements per IST day per api key")
    p.add_argument("--quotes-per-second", type=int, default=1)
    p.add_argument("--historical-per-second", type=int, default=3)
    p.add_argument("--other-per-second", type=int, default=10)
    p.add_argument("--no-rate-limits", action="store_true")
    p.add_argument("--frozen", action="store_true", help="start with the market standing still")
    p.add_argument("--market-hours", action="store_true",
                   help="orders follow NSE's session, 09:15-15:30 IST Mon-Fri, on the session clock "
                        "(outside it only AMO orders, queued until the open)")
    p.add_argument("--cash", type=float, default=1_000_000.0,
                   help="opening funds of every account in rupees (POST /_sim/accounts sets one account's)")
    p.add_argument("--stamp-token", type=int, metavar="TOKEN",
                   help="benchmarks only: in quote/full packets of this instrument, last_quantity carries the "
                        "frame's send time in epoch milliseconds mod 2^32 (off by default)")
    defaults = FaultSettings()
    for name, default in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", dest=f"fault_{name}")
        elif isinstance(default, list):
            p.add_argument(flag, dest=f"fault_{name}", help="comma-separated")
        else:
            p.add_argument(flag, type=type(default), dest=f"fault_{name}")
    a = p.parse_args(argv)
    faults = {}
    for name, default in vars(defaults).items():
        value = getattr(a, f"fault_{name}")
        if value in (None, False):
            continue
        faults[name] = value.split(",") if isinstance(default, list) else value
    return SimConfig(host=a.host, port=a.port, seed=a.seed, universe=a.universe, tick_rate=a.tick_rate,
                     market_step_ms=a.market_step_ms, rate=a.rate, strikes_each_side=a.strikes_each_side,
                     postback_url=a.postback_url,
                     strict_auth=a.strict_auth, daily_expiry=not a.no_daily_expiry,
                     api_secret=a.api_secret, accounts=a.account,
                     orders_per_second=a.orders_per_second, orders_per_minute=a.orders_per_minute,
                     orders_per_day=a.orders_per_day, quotes_per_second=a.quotes_per_second,
                     historical_per_second=a.historical_per_second, other_per_second=a.other_per_second,
                     rate_limits=not a.no_rate_limits, frozen=a.frozen, cash=a.cash, stamp_token=a.stamp_token,
                     market_hours=a.market_hours, faults=faults)
