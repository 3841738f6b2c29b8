"""A quiet console: the beat's periodic tasks stay out of the INFO log unless they did something.

Celery logs every task at INFO three times: beat's "Scheduler: Sending due task …"
(logger celery.beat), the worker's "Task …[id] received" (celery.worker.strategy,
format celery.app.trace.LOG_RECEIVED) and "Task …[id] succeeded in …"
(celery.app.trace, LOG_SUCCESS). For a task beat sends every few seconds that is
most of what `make run` prints. `QuietPeriodicTasks` demotes exactly those records
to DEBUG for the tasks named in `app.conf.beat_schedule` (read when a record is
logged, so the schedule stays the one list of periodic tasks) and drops them unless
DEBUG is enabled (`-l DEBUG` shows them, labelled DEBUG). Everything else is left
alone: failures ("raised unexpected", ERROR), retries, other tasks' lines, and the
periodic tasks' own INFO lines, which they write only when they did something.

Installed on Celery's `after_setup_logger` signal (workers/__init__.py), which the
worker (its pool children inherit it) and beat send once their logging is set up.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from celery.app import trace

#: celery.beat.Scheduler.apply_entry logs this, with (entry name, task name), before sending.
BEAT_SENDING_DUE = "Scheduler: Sending due task %s (%s)"
#: The loggers that write the per-task INFO lines (see the module docstring).
TASK_EVENT_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


def periodic_task_names(app) -> frozenset[str]:
    """The task names the beat schedule sends (the schedule is the only list of them)."""
    names = set()
    for entry in (app.conf.beat_schedule or {}).values():
        task = entry.get("task") if isinstance(entry, Mapping) else getattr(entry, "task", None)
        if task:
            names.add(task)
    return frozenset(names)


def task_name_of(record: logging.LogRecord) -> str | None:
    """The task a received / succeeded / sending-due record is about; None for any other record."""
    if record.msg in (trace.LOG_RECEIVED, trace.LOG_SUCCESS) and isinstance(record.args, Mapping):
        return record.args.get("name")
    if record.msg == BEAT_SENDING_DUE and isinstance(record.args, tuple) and len(record.args) == 2:
        return record.args[1]
    return None


class QuietPeriodicTasks(logging.Filter):
    """Demote the periodic tasks' received / succeeded / sending-due INFO records to DEBUG."""

    def __init__(self, app) -> None:
        super().__init__()
        self.app = app

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        name = task_name_of(record)
        if name is None or name not in periodic_task_names(self.app):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        # The logger let the record through at INFO; at DEBUG it is kept only where DEBUG is on.
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def install(app, logger_names=TASK_EVENT_LOGGERS) -> list[tuple[logging.Logger, QuietPeriodicTasks]]:
    """Put the filter on Celery's task-event loggers (once each); returns what was added."""
    added = []
    for logger_name in logger_names:
        logger = logging.getLogger(logger_name)
        if not any(isinstance(f, QuietPeriodicTasks) for f in logger.filters):
            quiet = QuietPeriodicTasks(app)
            logger.addFilter(quiet)
            added.append((logger, quiet))
    return added
