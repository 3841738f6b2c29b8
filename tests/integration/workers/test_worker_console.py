"""A quiet console: the beat's periodic tasks say nothing at INFO unless they did something.

A real worker at `-l INFO` (as the Procfile runs it), on a queue of its own with one pool
process so its log is in task order, runs the periodic tasks by name. Their "received" /
"succeeded" lines are gone; what they did, a failure, and an order task's lines are there.
Beat's "Sending due task" goes through a real celery.beat.Scheduler in this process.
"""
from __future__ import annotations

import logging
import re
import uuid

import pytest
from celery.beat import ScheduleEntry, Scheduler

from tests.support.waiting import wait_for
from tests.support.processes import CeleryWorker
from workers.celery_app import celery_app

RECONCILE = "workers.tasks.orders.reconcile_open_orders"
SETTLE = "workers.tasks.batches.settle_stuck_batches"
REQUEUE = "workers.tasks.webhooks.requeue_stranded_deliveries"
PLACE = "workers.tasks.orders.place_order"


@pytest.fixture(scope="module")
def console(accounts, instruments):
    """(worker, queue): a worker of its own, so the session's worker takes none of these tasks."""
    queue = f"console-test-{uuid.uuid4().hex[:8]}"
    worker = CeleryWorker(queues=queue, concurrency=1).start()
    yield worker, queue
    worker.stop()


def send(queue: str, name: str, *args, **kwargs):
    # ignore_result=False: the periodic tasks store no result by default; here the test waits on it.
    return celery_app.send_task(name, args=args, kwargs=kwargs, queue=queue, ignore_result=False)


def full_log(worker: CeleryWorker) -> str:
    return worker.log_path.read_text(errors="replace")


def lines_with(worker: CeleryWorker, text: str) -> list[str]:
    return [line for line in full_log(worker).splitlines() if text in line]


def queued_order(option) -> str:
    """An order recorded QUEUED and never enqueued (what a lost task leaves behind)."""
    from app.core.db import new_session
    from app.orders.schemas import validate_order
    from app.orders.service import new_order, request_hash
    from app.orders.states import QUEUED, record_event

    fields = validate_order({"exchange": option.exchange, "tradingsymbol": option.tradingsymbol,
                             "transaction_type": "BUY", "quantity": option.lot_size, "product": "NRML",
                             "order_type": "MARKET"})
    order = new_order("primary", fields, digest=request_hash("primary", fields))
    with new_session() as session:
        session.add(order)
        record_event(session, order, None, QUEUED)
        session.commit()
    return order.id


@pytest.fixture(scope="module")
def option(instruments):
    rows = [i for i in instruments.all() if i.segment == "NFO-OPT" and i.instrument_type == "CE"]
    return sorted(rows, key=lambda i: i.strike)[len(rows) // 2]


def test_idle_periodic_tasks_are_quiet_while_failures_and_order_tasks_show(console, option):
    worker, queue = console
    idle = {name: send(queue, name) for name in (RECONCILE, SETTLE, REQUEUE)}
    done = {name: result.get(timeout=30) for name, result in idle.items()}
    failing = send(queue, SETTLE, "soon")  # older_than_s="soon": the task raises
    failing.get(timeout=30, propagate=False)
    assert failing.failed()
    order = send(queue, PLACE, queued_order(option), "primary")
    assert order.get(timeout=30)["status"]
    # One pool process runs this queue in order: once the order's success line is written,
    # every line of the tasks before it is in the log.
    wait_for(lambda: lines_with(worker, f"{order.id}] succeeded"), 10, what="the order task's success line")

    for name, result in idle.items():
        assert not lines_with(worker, result.id), f"{name} logged at INFO:\n{full_log(worker)[-3000:]}"
    # An order task keeps both lines, at INFO.
    assert any("INFO/MainProcess" in line for line in lines_with(worker, f"{PLACE}[{order.id}] received"))
    assert any("INFO/ForkPoolWorker" in line for line in lines_with(worker, f"{PLACE}[{order.id}] succeeded"))
    # A periodic task that raised is still shown, at ERROR.
    assert any("ERROR/ForkPoolWorker" in line and "raised unexpected" in line
               for line in lines_with(worker, f"{SETTLE}[{failing.id}]"))
    # Each says at INFO only what it did (here most likely nothing; other tests may leave work).
    did = {RECONCILE: any(s["updated"] or s["requeued"] for s in done[RECONCILE].values()),
           SETTLE: bool(done[SETTLE]), REQUEUE: done[REQUEUE] > 0}
    said = {RECONCILE: "reconciler ", SETTLE: "stuck batch", REQUEUE: "stranded webhook"}
    for name, text in said.items():
        assert bool(lines_with(worker, text)) == did[name], (name, done[name], full_log(worker)[-3000:])


def test_reconciler_says_at_info_what_it_repaired(console, option):
    worker, queue = console
    queued_order(option)  # re-enqueued to the orders queue (the session's worker places it, if one runs)
    result = send(queue, RECONCILE, queued_lost_after=0)
    summary = result.get(timeout=30)
    assert summary["primary"]["requeued"] >= 1
    said = wait_for(lambda: [line for line in lines_with(worker, "reconciler ")
                             if re.search(r"INFO/ForkPoolWorker-\d+\] reconciler .*re-enqueued [1-9]", line)],
                    10, what="the reconciler's INFO line")
    assert "primary" in said[-1]
    assert not lines_with(worker, result.id)  # still no received / succeeded lines


def test_beat_sending_due_is_debug_only(console, caplog):
    from celery.signals import after_setup_logger

    from workers.periodic_logging import TASK_EVENT_LOGGERS, QuietPeriodicTasks

    _, queue = console
    # What `celery beat` sends once its logging is set up (workers/__init__.py installs the filter).
    after_setup_logger.send(sender=None, logger=logging.getLogger(), loglevel=logging.INFO, logfile=None,
                            format="%(message)s", colorize=False)
    added = [(logging.getLogger(name), f) for name in TASK_EVENT_LOGGERS
             for f in logging.getLogger(name).filters if isinstance(f, QuietPeriodicTasks)]
    assert added, "no filter installed on after_setup_logger"
    scheduler = Scheduler(celery_app, lazy=True)
    try:
        for level in (logging.INFO, logging.DEBUG):
            caplog.clear()
            caplog.set_level(level, logger="celery.beat")
            for name, task in (("reconcile-open-orders", RECONCILE), ("a-one-off", "celery.accumulate")):
                entry = ScheduleEntry(name=name, task=task, schedule=3600.0, options={"queue": queue},
                                      app=celery_app)
                scheduler.apply_entry(entry)
            sending = {r.getMessage(): r.levelname for r in caplog.records if "Sending due task" in r.getMessage()}
            periodic = f"Scheduler: Sending due task reconcile-open-orders ({RECONCILE})"
            other = "Scheduler: Sending due task a-one-off (celery.accumulate)"
            assert sending.get(other) == "INFO"  # not in the beat schedule: untouched
            assert sending.get(periodic) == (None if level == logging.INFO else "DEBUG"), sending
    finally:
        for logger, quiet in added:
            logger.removeFilter(quiet)
