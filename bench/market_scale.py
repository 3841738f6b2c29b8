"""The service side of the whole F&O market: a 100,000-instrument registry and 27,000 subscriptions.

    .venv/bin/python bench/market_scale.py            # PostgreSQL when reachable (as the tests), else SQLite
    .venv/bin/python bench/market_scale.py --sqlite   # SQLite in a temporary file

On a private database of its own (the tests' environment set-up), with a synthetic dump shaped as
Kite's (about 200 underlyings: spot, three monthly futures, monthly chains; indices with weeklies too):

- refresh    store_instruments of the whole dump (delete + COPY or chunked inserts, one transaction)
- load       the registry's reload from the table, and the process's RSS growth for it
- book       workers.stream.service.build_book (every option's metadata, every underlying's tokens)
- chain      one underlying's instruments from the registry's index
- bulk       POST /subscriptions/bulk of 27,000 tokens in FULL mode, three streaming accounts (new rows),
             then the same request again (all existing: one read, no writes)
Each is run a few times: the median and the fastest run are printed, with the load average.
- read       workers.stream.service.read_subscriptions (what apply_subscriptions re-reads every 5 s)
- assign     workers.stream.service.assign of the 27,000 over the three accounts
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.environment import API_KEYS, configure_test_environment  # noqa: E402

INDICES = {"NIFTY": ("NIFTY 50", 26000, 50, 65), "BANKNIFTY": ("NIFTY BANK", 59000, 100, 30),
           "FINNIFTY": ("NIFTY FIN SERVICE", 27000, 50, 65), "MIDCPNIFTY": ("NIFTY MID SELECT", 13000, 25, 120),
           "SENSEX": ("SENSEX", 85000, 100, 20)}


def _thursdays(today: date, count: int) -> list[date]:
    day = today + timedelta(days=(3 - today.weekday()) % 7 or 7)
    return [day + timedelta(weeks=k) for k in range(count)]


def _monthlies(today: date, count: int) -> list[date]:
    out, year, month = [], today.year, today.month
    while len(out) < count:
        last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1))
        expiry = last - timedelta(days=(last.weekday() - 3) % 7)
        if expiry > today:
            out.append(expiry)
        year, month = year + month // 12, month % 12 + 1
    return out


def synthetic_dump(stocks: int = 195, today: date | None = None) -> list[dict]:
    """Rows as kiteconnect's `instruments()` returns them: ~100,000 for 200 underlyings."""
    today = today or date.today()
    rows, token = [], 1 << 20
    monthly = _monthlies(today, 3)

    def row(**kw):
        nonlocal token
        token += 1
        rows.append({"instrument_token": (token << 8) | 2, "exchange_token": str(token), "last_price": 0.0,
                     "tick_size": 0.05, **kw})

    def chain(name, spot, step, lot, expiries, each_side):
        for expiry in monthly:
            row(tradingsymbol=f"{name}{expiry:%y%b}FUT".upper(), name=name, expiry=expiry, strike=0.0, lot_size=lot,
                instrument_type="FUT", segment="NFO-FUT", exchange="NFO")
        atm = round(spot / step) * step
        for expiry in expiries:
            for k in range(-each_side, each_side + 1):
                for side in ("CE", "PE"):
                    row(tradingsymbol=f"{name}{expiry:%y%m%d}{atm + k * step}{side}", name=name, expiry=expiry,
                        strike=float(atm + k * step), lot_size=lot, instrument_type=side, segment="NFO-OPT",
                        exchange="NFO")

    for name, (symbol, spot, step, lot) in INDICES.items():
        row(tradingsymbol=symbol, name=symbol, expiry="", strike=0.0, lot_size=0, instrument_type="EQ",
            segment="INDICES", exchange="NSE", last_price=float(spot))
        chain(name, spot, step, lot, sorted(set(_thursdays(today, 4)) | set(monthly)), 100)
    for k in range(stocks):
        name, spot = f"STOCK{k:03d}", 500 + 25 * k
        row(tradingsymbol=name, name=f"STOCK {k} LTD", expiry="", strike=0.0, lot_size=1, instrument_type="EQ",
            segment="NSE", exchange="NSE", last_price=float(spot))
        chain(name, spot, max(5, spot // 100), 500, monthly, 40)
    return rows


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, call, runs: int = 3, before=None):
    """`call()` `runs` times (`before()` ahead of each, not timed): prints the median and the fastest
    (this machine is shared: the fastest is the least disturbed run)."""
    times = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    print(f"{label:<48} {statistics.median(times) * 1000:10.1f} ms  (fastest {min(times) * 1000:.1f})")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", action="store_true", help="SQLite in a temporary file instead of PostgreSQL")
    parser.add_argument("--subscriptions", type=int, default=27_000)
    args = parser.parse_args()
    if args.sqlite:
        os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='market-scale-')}/ticker.db"
    environment = configure_test_environment()
    try:
        return run(args, environment)
    finally:
        environment.close()


def run(args, environment) -> int:
    from alembic import command

    from app import accounts as account_service
    from app import create_app
    from app.cli import alembic_config
    from app.core.db import session_scope
    from app.market.instruments import registry, store_instruments
    from app.models import Subscription
    from workers.stream.service import assign, build_book, read_subscriptions

    command.upgrade(alembic_config(), "head")
    print(f"database: {environment.backend}; load average: {os.getloadavg()[0]:.2f} (2-minute: "
          f"{os.getloadavg()[1]:.2f}) on {os.cpu_count()} cores")
    rows = synthetic_dump()
    print(f"dump: {len(rows):,} instruments")

    def refresh():
        with session_scope() as session:
            return store_instruments(session, rows)
    timed("refresh: store_instruments (whole dump)", refresh)

    instruments = registry()
    before = rss_mb()
    instruments.option_underlyings()  # the first load: what the process holds for it
    print(f"{'load: RSS growth':<48} {rss_mb() - before:10.1f} MB  ({len(instruments.all()):,} entries)")
    timed("load: registry reload from the table", instruments.option_underlyings, before=instruments.invalidate)
    book = timed("book: build_book", build_book)
    print(f"{'book: options / underlyings':<48} {len(book.options):>10,} / {len(book.underlyings)}")
    timed("chain: registry().underlying('NIFTY')", lambda: instruments.underlying("NIFTY"), runs=50)

    app = create_app()
    client = app.test_client()
    admin = {"X-API-Key": API_KEYS["admin"]}
    with session_scope() as session:
        for k in range(3):
            account_service.add_account(session, f"scale-{k}", api_key=f"scale-key-{k}", api_secret="s",
                                        access_token=f"scale-token-{k}")
    tokens = [i.instrument_token for i in instruments.all() if i.is_derivative][: args.subscriptions]
    body = {"instrument_tokens": tokens, "requested_mode": "FULL"}

    def bulk():
        response = client.post("/subscriptions/bulk", headers=admin, json=body)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        return response.json

    def unsubscribe_all():
        with session_scope() as session:
            session.query(Subscription).delete()
    created = timed(f"bulk: POST /subscriptions/bulk {len(tokens):,} new", bulk, before=unsubscribe_all)
    again = timed(f"bulk: the same {len(tokens):,} again (existing)", bulk)
    print(f"{'bulk: created / updated':<48} {created['created']:>10,} / {again['updated']}")
    subscribed = timed("read: read_subscriptions (apply_subscriptions)", read_subscriptions, runs=5)
    timed("assign: 27,000 over 3 leased accounts", lambda: assign(subscribed, ["scale-0", "scale-1", "scale-2"],
                                                                 {"scale-0"}), runs=5)
    with session_scope() as session:
        orm = timed("(for comparison: the same read as ORM objects)",
                    lambda: len(session.query(Subscription).all()))
    assert len(subscribed) == orm == len(tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
