"""A kill switch's record while a run drives it: the lease of the run, its steps, what is announced.

One run at a time drives an operation: it claims the row (`holder`) and keeps `heartbeat_at` fresh.
A run whose heartbeat stops — its worker was killed — is taken over by the next once the heartbeat is
older than `stale_after_s`; a run that finds the lease taken from it stops (LeaseLost). Every step it
records is published on the account's order stream as a `kill_switch` message; the operation's start
and end are also the webhook event `account.kill_switch`.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm.attributes import flag_modified

from app.core.db import new_session, session_scope
from app.core.timestamps import iso
from app.models import KillSwitch, utcnow
from app.orders.attempts import submission_lease_s
from app.orders.updates import publish
from app.webhooks import events as webhook_events

log = logging.getLogger(__name__)

RUNNING, DONE, FAILED = "running", "done", "failed"
MESSAGE = "kill_switch"              # the order stream's message type
WEBHOOK_EVENT = "account.kill_switch"
HEARTBEAT_EVERY_S = 1.0


def stale_after_s() -> float:
    """A run silent this long is gone: longer than the longest stretch between two heartbeats (a placement's
    tag lookup and broker call, each bounded by the broker timeout)."""
    return submission_lease_s() + 5.0


class LeaseLost(Exception):
    """Another run has taken the operation over (or it ended): this run stops."""


class OutOfTime(Exception):
    """This run has spent its time budget: the next one carries on."""


def view(operation: KillSwitch) -> dict:
    """The operation as `GET /kill-switches/{id}`, the order stream and the webhook show it."""
    return {
        "id": operation.id, "account_id": operation.account_id, "status": operation.status,
        "reason": operation.reason, "requested_by": operation.requested_by,
        "steps": list(operation.steps or []), "error": operation.error, "runs": operation.runs,
        "created_at": iso(operation.created_at), "updated_at": iso(operation.updated_at),
        "finished_at": iso(operation.finished_at),
    }


def announce(data: dict, milestone: bool = False) -> None:
    """A `kill_switch` message on the account's order stream; at a milestone (start, end) the webhook too."""
    publish(data["account_id"], data, MESSAGE)
    if milestone:
        webhook_events.account_event(data["account_id"], WEBHOOK_EVENT, data,
                                     subject=f"kill_switch:{data['id']}:{data['status']}")


def new_step(name: str, round_: int | None, status: str, detail: dict) -> dict:
    now = iso(utcnow())
    return {"step": name, **({"round": round_} if round_ is not None else {}), "status": status,
            "started_at": now, "finished_at": now if status != RUNNING else None, "detail": detail}


def first_step(name: str, detail: dict) -> dict:
    """A step already done when the operation is recorded (the halt)."""
    return new_step(name, None, DONE, detail)


def find_step(steps: list[dict], name: str, round_: int | None = None) -> dict | None:
    return next((s for s in steps if s["step"] == name and s.get("round") == round_), None)


class KillRun:
    """One run of an operation: its lease, its time budget, and the steps it records."""

    def __init__(self, kill_switch_id: str, budget_s: float, stale_after: float | None = None) -> None:
        self.kill_switch_id = kill_switch_id
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:128]
        self.deadline = time.monotonic() + budget_s
        self.stale_after = stale_after if stale_after is not None else stale_after_s()
        self.account_id: str | None = None
        self.steps: list[dict] = []
        self._beaten = 0.0

    # ---- the lease ------------------------------------------------------------------------------
    def claim(self) -> tuple[bool, KillSwitch | None]:
        """Take the lease: (True, operation), or (False, operation as it is: ended, or held by a live run)."""
        now = utcnow()
        with session_scope() as session:
            before = session.get(KillSwitch, self.kill_switch_id)
            if before is None:
                return False, None
            previous = before.holder
            claimed = session.execute(
                update(KillSwitch)
                .where(KillSwitch.id == self.kill_switch_id, KillSwitch.status == RUNNING,
                       or_(KillSwitch.holder.is_(None), KillSwitch.heartbeat_at.is_(None),
                           KillSwitch.heartbeat_at < now - timedelta(seconds=self.stale_after)))
                .values(holder=self.holder, heartbeat_at=now, runs=KillSwitch.runs + 1, updated_at=now)
                .execution_options(synchronize_session=False)).rowcount == 1
            session.refresh(before)
            operation = before
        if claimed:
            self.account_id, self.steps = operation.account_id, list(operation.steps or [])
            self._beaten = time.monotonic()
            if previous is not None:
                log.warning("kill switch taken over from a run that stopped (its worker was lost)",
                            extra={"kill_switch_id": self.kill_switch_id, "previous_holder": previous})
        return claimed, operation

    def release(self) -> None:
        """Hand the operation to the next run at once (this one is out of time)."""
        with session_scope() as session:
            session.execute(update(KillSwitch).where(KillSwitch.id == self.kill_switch_id,
                                                     KillSwitch.holder == self.holder)
                            .values(holder=None).execution_options(synchronize_session=False))

    def beat(self, force: bool = False) -> None:
        """Keep the lease fresh (at most once a second); LeaseLost when it was taken over."""
        if not force and time.monotonic() - self._beaten < HEARTBEAT_EVERY_S:
            return
        with session_scope() as session:
            kept = session.execute(
                update(KillSwitch).where(KillSwitch.id == self.kill_switch_id, KillSwitch.holder == self.holder,
                                         KillSwitch.status == RUNNING)
                .values(heartbeat_at=utcnow()).execution_options(synchronize_session=False)).rowcount == 1
        if not kept:
            raise LeaseLost(self.kill_switch_id)
        self._beaten = time.monotonic()

    def check(self) -> None:
        """Between two pieces of work: the heartbeat, and the time budget (OutOfTime)."""
        self.beat()
        if time.monotonic() > self.deadline:
            raise OutOfTime(self.kill_switch_id)

    def pause(self, seconds: float) -> None:
        """Wait, keeping the lease."""
        end = time.monotonic() + max(0.0, seconds)
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.25))

    # ---- the record -------------------------------------------------------------------------------
    def locked(self, session) -> KillSwitch:
        """The operation, locked in `session`, if this run still holds it (LeaseLost otherwise)."""
        operation = session.get(KillSwitch, self.kill_switch_id, with_for_update=True)
        if operation is None or operation.holder != self.holder or operation.status != RUNNING:
            raise LeaseLost(self.kill_switch_id)
        return operation

    def write_steps(self, operation: KillSwitch, steps: list[dict]) -> None:
        """Store `steps` on the locked operation (the caller commits, then announces)."""
        operation.steps = steps
        flag_modified(operation, "steps")
        operation.heartbeat_at = operation.updated_at = utcnow()
        self.steps = steps

    def step(self, name: str, status: str = RUNNING, detail: dict | None = None, round_: int | None = None,
             error: str | None = None) -> dict:
        """Record a step's status and detail (merged into what it had), and announce it."""
        with session_scope() as session:
            operation = self.locked(session)
            steps = [dict(s) for s in operation.steps or []]
            entry = find_step(steps, name, round_)
            if entry is None:
                entry = new_step(name, round_, status, dict(detail or {}))
                steps.append(entry)
            else:
                entry.update(status=status, detail={**entry.get("detail", {}), **(detail or {})})
                if status != RUNNING:
                    entry["finished_at"] = iso(utcnow())
            if error is not None:
                entry["error"] = error
            self.write_steps(operation, steps)
            data = view(operation)
        self._beaten = time.monotonic()
        announce(data)
        return entry

    def note_error(self, error: str) -> None:
        """A transient failure this run hands on to the next: shown on the operation while it runs."""
        with session_scope() as session:
            operation = self.locked(session)
            operation.error = error[:1000]
            operation.updated_at = utcnow()

    def finish(self, status: str, error: str | None = None) -> dict:
        """End the operation (done or failed); the step in progress ends with it."""
        with session_scope() as session:
            operation = self.locked(session)
            steps = [dict(s) for s in operation.steps or []]
            for entry in steps:
                if entry["status"] == RUNNING:
                    entry.update(status=status, finished_at=iso(utcnow()), **({"error": error} if error else {}))
            self.write_steps(operation, steps)
            operation.status, operation.error, operation.holder = status, error, None
            operation.finished_at = utcnow()
            data = view(operation)
        announce(data, milestone=True)
        return data


def load(kill_switch_id: str) -> KillSwitch | None:
    with new_session() as session:
        return session.get(KillSwitch, kill_switch_id)
