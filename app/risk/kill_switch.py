"""The kill switch: flatten an account at the broker and halt it, as one idempotent operation.

`start` (POST /accounts/{id}/kill-switch, or a daily-loss breach in app.risk.limits) halts the account
and records the operation in one transaction — so no new order slips in while the rest runs — and hands
it to a worker (workers.tasks.risk → `run`). Its steps, each recorded on the row and published on the
account's order stream (app.risk.kill_record):

1. halt          — done by `start` (app.risk.halt);
2. cancel_queued — orders accepted but not at the broker yet: cancelled unsent (app.risk.kill_cancels);
3. cancel_open   — every active GTT deleted, then every live order in the broker's own order book cancelled;
4. square_off    — round by round, the broker's net positions closed (app.risk.kill_square_off);
5. verify        — the broker's positions are flat and no order is live there: done. Otherwise another
                   round, up to MAX_ROUNDS; then failed, with the reason (also: a dead Kite session,
                   or MAX_DURATION_S gone by).

The account stays halted whatever the outcome, until `resume` (POST /accounts/{id}/resume), refused
while a kill switch runs. A run holds a lease and works for at most RUN_BUDGET_S, then the next run
carries on; a run whose worker died is taken over by the next one (the task redelivered, beat's
`resume_stalled`, or the same request again), which finds every step where the last run left it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.accounts import AccountNotFound
from app.broker.client import broker_client
from app.broker.errors import describe
from app.broker.order_limit_keys import order_limit_key_of
from app.core.db import new_session, session_scope
from app.core.task_client import send_task
from app.core.timestamps import iso
from app.kite_session.state import is_live
from app.models import Account, KillSwitch, Order, new_id, utcnow
from app.orders.states import QUEUED
from app.orders.updates import publish
from app.risk import halt as halting
from app.risk.kill_cancels import SessionDead, call, cancel_live, cancel_queued, delete_active_gtts, live_rows
from app.risk.kill_record import (DONE, FAILED, RUNNING, KillRun, LeaseLost, OutOfTime, announce, find_step,
                                  first_step, load, stale_after_s, view)
from app.risk.kill_square_off import STEP as SQUARE_OFF, drive, expected_after, key_of, open_positions, \
    record_round, settle

log = logging.getLogger(__name__)

RUN_TASK = "workers.tasks.risk.run_kill_switch"
HALT, CANCEL_QUEUED, CANCEL_OPEN, VERIFY = "halt", "cancel_queued", "cancel_open", "verify"
MAX_ROUNDS = 3          # square-off rounds that reach the broker before the operation fails
MAX_RECORDED_ROUNDS = 8  # rounds recorded at all (with those whose orders lapsed unsent)
RUN_BUDGET_S = 20.0     # one run's work; with a placement in flight it stays under the task's soft time limit
MAX_DURATION_S = 600.0  # an operation not finished in ten minutes fails, saying what stopped it
RETRY_S = 2.0           # after a failure of the broker or the database, the next run starts this much later
SETTLE_S = 3.0          # how long positions may lag a round's fills at the broker
POLL_S = 0.25


class KillSwitchNotFound(LookupError):
    pass


class KillSwitchRunning(Exception):
    """The account cannot resume while its kill switch runs."""

    def __init__(self, kill_switch_id: str) -> None:
        super().__init__(f"kill switch {kill_switch_id} is still running: the account resumes once it has ended")
        self.kill_switch_id = kill_switch_id


@dataclass(frozen=True)
class RunResult:
    status: str                     # the operation's: running | done | failed (missing: no such operation)
    again_in_s: float | None = None  # still running: run again after this long (None: another run has it)


# ---- the API's side ------------------------------------------------------------------------------

def start(account_id: str, reason: str, requested_by: str,
          idempotency_key: str | None = None) -> tuple[KillSwitch, bool]:
    """Halt the account and start its kill switch. Returns (operation, created): created=False gives back
    the operation already running on the account, or the one started with this Idempotency-Key (whatever
    its status). AccountNotFound for an unknown or inactive account."""
    try:
        operation, created = _record(account_id, reason, requested_by, idempotency_key)
    except IntegrityError:  # the same key, concurrently (a database without row locks)
        operation, created = _under_key(account_id, idempotency_key), False
        if operation is None:
            raise
    if created:
        log.warning("kill switch started", extra={"account_id": account_id, "kill_switch_id": operation.id,
                                                  "reason": reason, "requested_by": requested_by})
        announce(view(operation), milestone=True)
        enqueue(operation.id)
    elif operation.status == RUNNING and _stalled(operation, stale_after_s()):
        enqueue(operation.id)  # its run is gone: asking again carries it on
    return operation, created


def _under_key(account_id: str, idempotency_key: str | None) -> KillSwitch | None:
    if not idempotency_key:
        return None
    with new_session() as session:
        return session.scalars(select(KillSwitch).where(KillSwitch.account_id == account_id,
                                                        KillSwitch.idempotency_key == idempotency_key)).first()


def _record(account_id: str, reason: str, requested_by: str, idempotency_key: str | None) -> tuple[KillSwitch, bool]:
    with session_scope() as session:
        account = session.get(Account, account_id, with_for_update=True)  # concurrent starts queue up here
        if account is None or not account.active:
            raise AccountNotFound(account_id)
        if idempotency_key:
            earlier = session.scalars(select(KillSwitch).where(KillSwitch.account_id == account_id,
                                                               KillSwitch.idempotency_key == idempotency_key)).first()
            if earlier is not None:
                return earlier, False
        running = session.scalars(select(KillSwitch).where(KillSwitch.account_id == account_id,
                                                           KillSwitch.status == RUNNING)
                                  .order_by(KillSwitch.created_at)).first()
        if running is not None:
            return running, False
        now = utcnow()
        operation = KillSwitch(id=new_id(), account_id=account_id, status=RUNNING, reason=reason,
                               requested_by=requested_by, idempotency_key=idempotency_key, runs=0,
                               created_at=now, updated_at=now)
        halting.halt(account, reason, requested_by, operation.id)
        operation.steps = [first_step(HALT, {"halted_at": iso(account.halted_at)})]
        session.add(operation)
    return operation, True


def get(kill_switch_id: str) -> KillSwitch:
    operation = load(kill_switch_id)
    if operation is None:
        raise KillSwitchNotFound(f"kill switch {kill_switch_id!r} not found")
    return operation


def resume(account_id: str, resumed_by: str) -> dict:
    """Clear the account's halt (refused with KillSwitchRunning while a kill switch runs); returns the
    account's halted state (none now) and what it was."""
    with session_scope() as session:
        account = session.get(Account, account_id, with_for_update=True)
        if account is None or not account.active:
            raise AccountNotFound(account_id)
        running = session.scalar(select(KillSwitch.id).where(KillSwitch.account_id == account_id,
                                                             KillSwitch.status == RUNNING).limit(1))
        if running is not None:
            raise KillSwitchRunning(running)
        was = halting.halted_view(account)
        halting.clear(account)
    answer = {"account_id": account_id, "halted": None, "resumed_at": iso(utcnow()), "resumed_by": resumed_by,
              "was": was}
    if was is not None:
        log.warning("account resumed after a halt", extra={"account_id": account_id, "resumed_by": resumed_by})
        publish(account_id, answer, "halt")
    return answer


def enqueue(kill_switch_id: str, stale_after: float | None = None) -> bool:
    try:
        send_task(RUN_TASK, [kill_switch_id], {"stale_after_s": stale_after})
        return True
    except Exception:  # the operation is recorded: beat's resume_stalled sends it
        log.exception("kill switch run not enqueued; beat resumes it", extra={"kill_switch_id": kill_switch_id})
        return False


def _stalled(operation: KillSwitch, stale_after: float) -> bool:
    last = operation.heartbeat_at or operation.updated_at
    return last is None or (utcnow() - last).total_seconds() > stale_after


def resume_stalled(stale_after: float | None = None) -> list[str]:
    """Beat: send again every running operation whose run has gone silent (its worker died, or its task
    was never enqueued). Returns their ids."""
    stale_after = stale_after_s() if stale_after is None else stale_after
    cutoff = utcnow() - timedelta(seconds=stale_after)
    with new_session() as session:
        due = list(session.scalars(select(KillSwitch.id).where(
            KillSwitch.status == RUNNING,
            func.coalesce(KillSwitch.heartbeat_at, KillSwitch.updated_at) < cutoff)))
    for kill_switch_id in due:
        log.warning("kill switch resumed: its run went silent", extra={"kill_switch_id": kill_switch_id})
        enqueue(kill_switch_id, stale_after)
    return due


# ---- the worker's side ---------------------------------------------------------------------------

def run(kill_switch_id: str, budget_s: float = RUN_BUDGET_S, stale_after: float | None = None) -> RunResult:
    """One run: take the lease, carry the operation on from where it is, for at most `budget_s`."""
    lease = KillRun(kill_switch_id, budget_s, stale_after)
    claimed, operation = lease.claim()
    if operation is None:
        return RunResult("missing")
    if not claimed:
        if operation.status != RUNNING:
            return RunResult(operation.status)
        silent = (utcnow() - operation.heartbeat_at).total_seconds() if operation.heartbeat_at else 0.0
        return RunResult(RUNNING, max(0.5, lease.stale_after - silent + 0.5))  # taken over if it stays silent
    try:
        if (utcnow() - operation.created_at).total_seconds() > MAX_DURATION_S:
            return RunResult(_fail(lease, f"gave up after {MAX_DURATION_S / 60:.0f} minutes"
                                          f"{': ' + operation.error if operation.error else ''}"))
        return RunResult(_carry_on(lease))
    except OutOfTime:
        lease.release()
        return RunResult(RUNNING, 0.0)
    except LeaseLost:
        return RunResult(RUNNING)
    except SessionDead as exc:
        try:
            return RunResult(_fail(lease, f"the Kite session of account {lease.account_id!r} is not live ({exc}): "
                                          "log in again, then start the kill switch again; the account stays halted"))
        except LeaseLost:
            return RunResult(RUNNING)
    except Exception as exc:  # the broker or the database failed for now: the next run carries on
        log.warning("kill switch run failed; the next one carries on", exc_info=True,
                    extra={"kill_switch_id": kill_switch_id})
        try:
            lease.note_error(describe(exc))
            lease.release()
        except Exception:
            pass  # the lease lapses by itself
        return RunResult(RUNNING, RETRY_S)


def _done(lease: KillRun, name: str) -> bool:
    step = find_step(lease.steps, name)
    return step is not None and step["status"] == DONE


def _carry_on(lease: KillRun) -> str:
    if not is_live(lease.account_id):
        raise SessionDead("no live Kite session")
    kite = broker_client(lease.account_id)
    limit_key = order_limit_key_of(lease.account_id)
    if not _done(lease, CANCEL_QUEUED):
        before = (find_step(lease.steps, CANCEL_QUEUED) or {}).get("detail", {})
        lease.step(CANCEL_QUEUED)
        counts = cancel_queued(lease, kite)
        lease.step(CANCEL_QUEUED, DONE, {name: before.get(name, 0) + n for name, n in counts.items()})
    if not _done(lease, CANCEL_OPEN):
        before = (find_step(lease.steps, CANCEL_OPEN) or {}).get("detail") or {}  # a run cut off mid-step
        lease.step(CANCEL_OPEN)
        gtts = delete_active_gtts(lease, kite, limit_key)  # first: one firing now is cancelled just after
        done = {**cancel_live(lease, kite, limit_key, on_cancel=lambda ids: lease.step(
            CANCEL_OPEN, detail=_with_earlier_cancels(before, {"cancelled": ids, "refused": {}, "gtts": gtts}))),
            "gtts": gtts}
        lease.step(CANCEL_OPEN, DONE, _with_earlier_cancels(before, done))
    for round_ in range(1, MAX_RECORDED_ROUNDS + 1):
        step = find_step(lease.steps, SQUARE_OFF, round_)
        if step is not None and step["status"] == DONE:
            continue
        if step is None:
            if _rounds_that_traded(lease.steps) >= MAX_ROUNDS:
                break
            positions = _positions(lease, kite, limit_key, find_step(lease.steps, SQUARE_OFF, round_ - 1))
            if not positions:
                return _flat(lease)
            order_ids = record_round(lease, round_, positions)
        else:
            order_ids = [o["id"] for o in step["detail"]["orders"]]
        drive(lease, kite, order_ids, limit_key)
        lease.step(SQUARE_OFF, DONE, {"orders": settle(lease, kite, order_ids)}, round_=round_)
    rounds = [s for s in lease.steps if s["step"] == SQUARE_OFF]
    positions = _positions(lease, kite, limit_key, rounds[-1] if rounds else None)
    if not positions:
        return _flat(lease)
    lease.step(VERIFY, FAILED, {"positions": positions})
    return _fail(lease, f"positions still open after {MAX_ROUNDS} square-off rounds: "
                        + ", ".join(f"{p['tradingsymbol']} {p['product']} {p['quantity']}" for p in positions))


def _with_earlier_cancels(before: dict, now: dict) -> dict:
    """The cancel step's detail over every run: a run that took over from one cut off mid-step finds the
    earlier run's cancels done already, and the report still names them."""
    if not before:
        return now
    merged = dict(now)
    merged["cancelled"] = sorted(set(before.get("cancelled", [])) | set(now["cancelled"]))
    merged["refused"] = {**before.get("refused", {}), **now["refused"]}
    earlier_gtts = before.get("gtts") or {"deleted": [], "refused": {}}
    merged["gtts"] = {"deleted": sorted(set(earlier_gtts["deleted"]) | set(now["gtts"]["deleted"])),
                      "refused": {**earlier_gtts["refused"], **now["gtts"]["refused"]}}
    return merged


def _rounds_that_traded(steps: list[dict]) -> int:
    """Square-off rounds that reached the broker: one whose orders all lapsed unsent (a run taken over
    after their expiry) is planned again without counting."""
    return sum(1 for s in steps if s["step"] == SQUARE_OFF and s["status"] == DONE
               and any(o.get("broker_order_id") or o.get("filled_quantity") for o in s["detail"]["orders"]))


def _positions(lease: KillRun, kite, limit_key: str, last_round: dict | None) -> list[dict]:
    """The broker's open net positions, read once no order is live there (one placed elsewhere meanwhile
    could open a position again) and once the last round's fills show in them."""
    if live_rows(call(lease, kite.orders)):
        cancel_live(lease, kite, limit_key)
    expected = (expected_after(last_round["detail"]["positions"], last_round["detail"]["orders"])
                if last_round is not None else None)
    waited = 0.0
    while True:
        positions = open_positions(call(lease, kite.positions)["net"])
        if expected is None:
            return positions
        seen = {key_of(p): p["quantity"] for p in positions}
        if all(seen.get(key, 0) == quantity for key, quantity in expected.items()) and set(seen) <= set(expected):
            return positions
        if waited >= SETTLE_S:  # something else moved them: the broker's word is what is squared off
            log.warning("positions differ from the square-off's fills; squaring off what the broker shows",
                        extra={"kill_switch_id": lease.kill_switch_id})
            return positions
        lease.pause(POLL_S)
        waited += POLL_S


def _flat(lease: KillRun) -> str:
    lease.step(VERIFY, DONE, {"positions": "flat", "live_orders": 0})
    return lease.finish(DONE)["status"]


def _fail(lease: KillRun, error: str) -> str:
    status = lease.finish(FAILED, error)["status"]
    _withdraw_unsent(lease.kill_switch_id)
    log.error("kill switch failed: %s", error, extra={"kill_switch_id": lease.kill_switch_id})
    return status


def _withdraw_unsent(kill_switch_id: str) -> None:
    """A failed operation's square-off orders not sent yet never go (the worker's guard refuses them too)."""
    with new_session() as session:
        unsent = list(session.scalars(select(Order.id).where(Order.kill_switch_id == kill_switch_id,
                                                             Order.status == QUEUED)))
    for order_id in unsent:
        try:
            halting.withdraw(order_id, error=halting.SQUARE_OFF_ENDED)
        except Exception:
            log.warning("square-off order not withdrawn", exc_info=True, extra={"order_id": order_id})
