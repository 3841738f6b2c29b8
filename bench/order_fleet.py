"""Many accounts at their full order budget at once (`bench/orders.py --accounts N`).

Each account is a paper account with a live session (registered at the broker and in the service)
that sends single MARKET orders through the web server's REST API at `rate` orders a second, evenly
spaced (the accounts' phases spread over one gap, so the load is even), and no more than
ORDER_RATE_PER_MINUTE in a minute: at Kite's 10/s and 400/min that is 40 s of sending, then none until
the minute is over. The Celery worker places them at the paper broker; the figures come from the
database (`accepted_at`, `acked_at`), the broker's counters and order books, and /proc.

"Let through at once" is defined by replaying the budget over the times the client sent the requests,
with the limiter's own rules (app.broker.rate_limit: at most ORDER_RATE_PER_SECOND placements in any
SECOND_WINDOW_S, ORDER_RATE_PER_MINUTE in any MINUTE_WINDOW_S, first come first served, a queued
placement a window's share after the one before it): an order whose turn in that replay is the moment it
was sent is let through at once; any other is deferred by the budget, and its turn is when the budget
lets it go. (Send times, not `accepted_at`: a web server that answers late stamps orders in clumps,
which must not count as the client's doing.)
Kite's 10 per calendar second is 10 per 1.025 s in the limiter (25 ms of slack), so at exactly 10/s
every order after an account's first ten is deferred, by 25 ms more each second, until the minute's
last one (about 1 s by the 400th).
"""
from __future__ import annotations

import asyncio
import bisect
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from overload import rows_of

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Worker processes: the Procfile's 4, and two more for the orders that sleep in a process until their
# send slot (up to SLOT_WAIT_INLINE_S, 0.25 s: at Kite's 10/s most orders after the first second do).
FLEET_WORKERS = 6


@dataclass
class Sent:
    account: str
    due: float             # when the client meant to send it (monotonic)
    key: str = ""          # its Idempotency-Key: a request resent after a dropped connection is the same order
    status: int = 0
    order_id: str | None = None
    answer_ms: float = 0.0
    resent: int = 0
    error: str | None = None
    sent_at: float = 0.0   # wall clock (epoch seconds) when its request left


def fleet_accounts(count: int) -> list[dict]:
    return [{"id": f"fleet-{n:02d}", "api_key": f"bench-fleet-{n:02d}", "api_secret": f"fleet-secret-{n:02d}",
             "access_token": f"fleet-token-{n:02d}"} for n in range(count)]


def register(broker, accounts: list[dict]) -> None:
    """At the broker (its session live there) and in the service (a token registered by hand is live)."""
    from app import accounts as account_service
    from app.core.db import session_scope

    for account in accounts:
        credentials = {k: account[k] for k in ("api_key", "api_secret", "access_token")}
        broker.add_account(**credentials)
        with session_scope() as session:
            account_service.add_account(session, account["id"], **credentials)


def schedule(accounts: list[dict], seconds: float, rate: float, per_minute: int, minute_s: float,
             already: int = 0) -> list[Sent]:
    """Each account's send times: one every 1/rate s, at most `per_minute` in each `minute_s` (the first
    minute holds `already` placements sent just before); the accounts' phases spread over one gap."""
    gap = 1.0 / rate
    plan = []
    for index, account in enumerate(accounts):
        phase = gap * index / len(accounts)
        k = 0
        while True:
            position = k + already
            due = phase + (position % per_minute - already) * gap + (position // per_minute) * minute_s
            if due >= seconds:
                break
            plan.append(Sent(account["id"], due, key=f"fleet-{index:02d}-{k}"))
            k += 1
    return sorted(plan, key=lambda s: s.due)


async def _send_all(base: str, headers: dict, body: dict, plan: list[Sent]) -> float:
    connector = aiohttp.TCPConnector(limit=400)  # at most 400 requests in flight: a late one waits for a connection
    timeout = aiohttp.ClientTimeout(total=30)  # from the moment it is due, its wait for a connection included
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:
        loop = asyncio.get_running_loop()
        started = loop.time() + 0.2

        async def one(sent: Sent) -> None:
            await asyncio.sleep(max(0.0, started + sent.due - loop.time()))
            t0, sent.sent_at = loop.time(), time.time()
            while True:
                try:
                    async with http.post(f"{base}/accounts/{sent.account}/orders", json=body,
                                         headers={"Idempotency-Key": sent.key}) as response:
                        sent.status = response.status
                        answer = await response.json(content_type=None)
                    break
                except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
                    # a kept-alive connection the server had closed meanwhile: send it again (same key)
                    sent.resent += 1
                    if sent.resent > 3:
                        sent.status, sent.error = -1, repr(exc)
                        return
                except asyncio.TimeoutError:
                    sent.status, sent.error = -1, "no answer within 30 s"
                    return
            sent.answer_ms = (loop.time() - t0) * 1000
            if sent.status == 202:
                sent.order_id = answer["id"]

        await asyncio.gather(*(one(s) for s in plan))
        return loop.time() - started


def send(base: str, headers: dict, body: dict, plan: list[Sent]) -> float:
    """Send the plan on time (each request on its own: a slow answer delays no other); seconds taken."""
    return asyncio.run(_send_all(base, headers, body, plan))


def stored_orders(accounts: list[dict], leave_out: set[str]) -> list:
    """Every order the accounts have in the database (those whose request the client gave up on
    included), less `leave_out`."""
    from sqlalchemy import select

    from app.core.db import new_session
    from app.models import Order

    with new_session() as session:
        rows = session.scalars(select(Order).where(Order.account_id.in_([a["id"] for a in accounts])))
        return [r for r in rows if r.id not in leave_out]


def wait_settled(accounts: list[dict], leave_out: set[str], timeout: float) -> list:
    """The accounts' orders once no more arrive (requests the client gave up on may still be stored) and
    each is acked or final — or once the timeout passed."""
    from app.orders.states import QUEUED, SUBMITTING

    deadline, count = time.monotonic() + timeout, -1
    while True:
        rows = stored_orders(accounts, leave_out)
        settled = all(r.acked_at is not None or r.status not in (QUEUED, SUBMITTING) for r in rows)
        if (settled and len(rows) == count) or time.monotonic() > deadline:
            return rows
        count = len(rows)
        time.sleep(2.0)


def budget_turns(accepted: list[float], per_second: int, second_s: float, per_minute: int,
                 minute_s: float) -> list[float]:
    """When the budget lets each placement of one account go, given when each was accepted (sorted):
    the rules of app.broker.rate_limit's placement_slot, replayed with a service that takes no time."""
    turns: list[float] = []
    for now in accepted:
        turn = now
        if turns and turns[-1] > now:  # behind placements still waiting: a window's share after the last
            turn = max(turns[-1], turns[-1] + second_s / per_second)
        if per_minute and len(turns) >= per_minute:
            turn = max(turn, turns[-per_minute] + minute_s)
        if len(turns) >= per_second:
            turn = max(turn, turns[-per_second] + second_s)
        turns.append(turn)
    return turns


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return (f"p50 {statistics.median(values):7.1f} ms  p99 {percentile(values, 99):7.1f} ms  "
            f"max {max(values):7.1f} ms  (n={len(values)})")


# ---- CPU of the stack's processes, from /proc --------------------------------------------------------

def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(roots: dict[str, int], database: str) -> dict[str, dict[int, float]]:
    """CPU seconds used so far, per process, by each named process and its descendants, by the
    PostgreSQL backends of `database` and by Redis (shared with whatever else runs on this machine)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                stats[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)

    def tree(pid: int) -> dict[int, float]:
        found = {pid: stats[pid][1]} if pid in stats else {}
        for child in children.get(pid, []):
            if child not in roots.values():
                found.update(tree(child))
        return found

    figures = {name: tree(pid) for name, pid in roots.items() if name != "client"}
    if "client" in roots:  # this process alone: the stack's processes are its children
        figures["client"] = {roots["client"]: stats.get(roots["client"], (0, 0.0))[1]}
    commands = {pid: _cmdline(pid) for pid in stats}
    figures["postgres"] = {pid: stats[pid][1] for pid, command in commands.items()
                           if command.startswith("postgres:") and f" {database} " in command}
    figures["redis"] = {pid: stats[pid][1] for pid, command in commands.items() if "redis-server" in command}
    return figures


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds between two snapshots (a process started in between counts whole)."""
    return {name: sum(seconds - before.get(name, {}).get(pid, 0.0) for pid, seconds in procs.items())
            for name, procs in after.items()}


# ---- the broker's side -------------------------------------------------------------------------------

def duplicates(broker, accounts: list[dict], rows: list) -> dict:
    """Broker orders per tag and per service order: anything above one is a duplicate."""
    tags_of_service = {r.tag for r in rows}
    extra_by_tag = unknown = 0
    broker_ids = Counter()
    for account in accounts:
        tags = Counter(o.get("tag") for o in broker.orders(account["api_key"]))
        extra_by_tag += sum(count - 1 for count in tags.values() if count > 1)
        unknown += sum(count for tag, count in tags.items() if tag not in tags_of_service)
    broker_ids.update(r.broker_order_id for r in rows if r.broker_order_id)
    shared_ids = sum(count - 1 for count in broker_ids.values() if count > 1)
    return {"extra_by_tag": extra_by_tag, "shared_broker_ids": shared_ids, "unknown_tags": unknown}


# ---- the run and its figures ---------------------------------------------------------------------------

@dataclass
class Measured:
    """What one run leaves to report, beside the plan and the stored orders."""

    send_s: float
    wall_s: float
    cpu_s: dict[str, float]
    load_before: float
    machine_busy_pct: float
    broker_429s: dict[str, int]
    postbacks: dict[str, int]


def run_fleet(args, order_body, pick_option, acked) -> None:
    """`bench/orders.py --accounts N`: its own stack (bench/stack.py), the accounts, a warm-up order each,
    then the plan; prints the figures."""
    import requests
    from sqlalchemy.engine import make_url

    from stack import bench_stack

    processes: dict = {}
    workers = args.workers or FLEET_WORKERS
    with bench_stack(worker_concurrency=workers, web_workers=args.web_workers, processes=processes) \
            as (app, server, broker, headers):
        from app.broker.rate_limit import MINUTE_WINDOW_S, SECOND_WINDOW_S
        from app.core.config import get_settings

        settings = get_settings()
        accounts = fleet_accounts(args.accounts)
        register(broker, accounts)
        body = order_body(pick_option())
        http = requests.Session()
        # warm-up, one order per account: connections, each pool process's broker clients
        warm = [http.post(f"{server.url}/accounts/{a['id']}/orders", json=body, headers=headers).json()["id"]
                for a in accounts]
        acked(warm)
        time.sleep(SECOND_WINDOW_S)  # the warm-ups out of the second's window (they stay in the minute's)

        plan = schedule(accounts, args.seconds, args.rate, int(settings.order_rate_per_minute), MINUTE_WINDOW_S,
                        already=1)
        roots = {"web": server.pid, "worker": processes["worker"].pid, "broker": broker.pid, "client": os.getpid()}
        database = make_url(settings.database_url).database
        broker_before, load_before = broker.state(), os.getloadavg()[0]
        cpu_before, machine_before, started = cpu_seconds(roots, database), machine_ticks(), time.monotonic()
        send_s = send(server.url, headers, body, plan)
        rows = wait_settled(accounts, set(warm), timeout=240)
        cpu_after, wall_s = cpu_seconds(roots, database), time.monotonic() - started
        busy, total = (after - before for after, before in zip(machine_ticks(), machine_before))
        broker_after = broker.state()
        measured = Measured(
            send_s, wall_s, cpu_used(cpu_before, cpu_after), load_before, busy / max(1, total) * 100,
            {kind: count - broker_before["rate_limited_by_class"].get(kind, 0)
             for kind, count in broker_after["rate_limited_by_class"].items()},
            {kind: broker_after["postbacks"][kind] - broker_before["postbacks"][kind] for kind in ("sent", "failed")})
        report(args, workers, settings, accounts, plan, rows, rows_of(warm), measured, broker)


def report(args, workers, settings, accounts, plan, rows, warm_rows, measured: Measured, broker) -> None:
    from app.broker.rate_limit import MINUTE_WINDOW_S, SECOND_WINDOW_S

    per_second, per_minute = int(settings.order_rate_per_second), int(settings.order_rate_per_minute)
    acked_rows = [r for r in rows if r.acked_at is not None]
    print(f"fleet: {args.accounts} accounts × {args.rate:g} orders/s for {args.seconds:g} s (at most {per_minute} "
          f"a minute each); {workers} worker processes, {args.web_workers} web process(es); load average before "
          f"{measured.load_before:.2f}, after {os.getloadavg()[0]:.2f}; the machine's {os.cpu_count()} cores "
          f"{measured.machine_busy_pct:.0f} % busy during the run")
    print(f"  sent {len(plan)} in {measured.send_s:.1f} s ({len(plan) / measured.send_s:.1f}/s); answers "
          f"{dict(Counter(s.status for s in plan))} (-1: none); accepted (202) {sum(1 for s in plan if s.order_id)}; "
          f"stored {len(rows)}; acked {len(acked_rows)}; statuses {dict(Counter(r.status for r in rows))}")
    print(f"  REST answer (202)        {spread([s.answer_ms for s in plan if s.order_id])}; "
          f"{sum(s.resent for s in plan)} requests resent on a dropped kept-alive connection (same Idempotency-Key)")
    for error in {s.error for s in plan if s.error}:
        print(f"  client error: {error}")

    # The budget replayed over each account's send times (its warm-up order included: it counts).
    at_once, deferred, waits, behind = [], [], [], []
    for account in accounts:
        sends = sorted([(r.accepted_at.timestamp(), None) for r in warm_rows if r.account_id == account["id"]]
                       + [(s.sent_at, s.key) for s in plan if s.account == account["id"]], key=lambda pair: pair[0])
        turns = budget_turns([t for t, _ in sends], per_second, SECOND_WINDOW_S, per_minute, MINUTE_WINDOW_S)
        turn_of = {key: (sent_at, turn) for (sent_at, key), turn in zip(sends, turns) if key}
        for r in acked_rows:
            if r.account_id != account["id"] or r.idempotency_key not in turn_of:
                continue
            sent_at, turn = turn_of[r.idempotency_key]
            accept_to_ack = (r.acked_at - r.accepted_at).total_seconds() * 1000
            if turn <= sent_at:
                at_once.append(accept_to_ack)
            else:
                deferred.append(accept_to_ack)
                waits.append((turn - sent_at) * 1000)
                behind.append((r.acked_at.timestamp() - turn) * 1000)
    print(f"  accept → ack, let through at once     {spread(at_once)}   (target p99 ≤ 100 ms)")
    print(f"  accept → ack, deferred by the budget  {spread(deferred)}")
    print(f"    their wait for the budget           {spread(waits)}")
    print(f"    ack − their turn in the budget      {spread(behind)}")

    acks = sorted(r.acked_at.timestamp() for r in acked_rows)
    span = acks[-1] - acks[0] if len(acks) > 1 else float("nan")
    per_account = Counter(r.account_id for r in acked_rows)
    rates = [per_account[a["id"]] / span for a in accounts]
    busiest = max((bisect.bisect_left(acks, t + 1.0) - i for i, t in enumerate(acks)), default=0)
    print(f"  acks/s: total {len(acks) / span:.1f} over {span:.1f} s (busiest second {busiest}); per account "
          f"min {min(rates):.2f}, median {statistics.median(rates):.2f}, max {max(rates):.2f}")
    dup = duplicates(broker, accounts, rows + warm_rows)
    print(f"  broker 429s by class of call: {measured.broker_429s}; postbacks {measured.postbacks}")
    print(f"  attempts per order {dict(sorted(Counter(r.attempts for r in rows).items()))}; duplicates: "
          f"{dup['extra_by_tag']} extra broker orders per tag, {dup['shared_broker_ids']} broker orders shared by "
          f"service orders, {dup['unknown_tags']} broker orders with no service order")
    print(f"  CPU over {measured.wall_s:.1f} s (send + drain), % of one core: "
          + ", ".join(f"{name} {seconds / measured.wall_s * 100:.0f} %" for name, seconds in measured.cpu_s.items())
          + " (postgres: the run's database's backends; redis: the whole server)")
    print("  CPU per order acked: " + ", ".join(f"{name} {seconds / max(1, len(acked_rows)) * 1000:.1f} ms"
                                             for name, seconds in measured.cpu_s.items()))
