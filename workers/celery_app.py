"""The Celery application: `celery -A workers.celery_app worker|beat|flower`."""
from celery import Celery, bootsteps, states
from celery.signals import after_setup_logger, task_postrun, worker_process_init, worker_ready

from app.core.config import require_credentials_key
from app.core.task_client import configure_celery

TASK_MODULES = [
    "workers.tasks.batches",
    "workers.tasks.maintenance",
    "workers.tasks.orders",
    "workers.tasks.risk",
    "workers.tasks.risk_limits",
    "workers.tasks.webhooks",
]

celery_app = configure_celery(Celery("ticker", include=TASK_MODULES))


class CredentialsKeyRequired(bootsteps.Step):
    """The worker decrypts Kite and webhook secrets: without CREDENTIALS_KEY it stops as it starts,
    saying how to make one (beat and Flower, which decrypt nothing, need none)."""

    def __init__(self, parent, **kwargs):
        require_credentials_key()
        super().__init__(parent, **kwargs)


celery_app.steps["worker"].add(CredentialsKeyRequired)


@after_setup_logger.connect
def _quiet_periodic_tasks(**_kwargs) -> None:
    # Worker and beat: the beat schedule's tasks log "sending due" / "received" /
    # "succeeded" at DEBUG; they say at INFO what they did, when they did something.
    from workers import periodic_logging

    periodic_logging.install(celery_app)


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    # Prefork children must not share the parent's database connections.
    from app.core.db import reset_engine

    reset_engine()


def release_tracebacks(exc: BaseException | None) -> None:
    """Drop the tracebacks of `exc` and of the exceptions it was raised from (its cause and context)."""
    seen: set[int] = set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


@task_postrun.connect
def _free_retried_task_memory(state=None, retval=None, **_kwargs) -> None:
    # A retried or failed task's exception holds its traceback, whose frames hold the exception
    # back (Celery's tracer keeps it in a local): a reference cycle that only the cyclic GC's
    # oldest generation frees, and billiard's ExceptionInfo copies every frame's code positions
    # with it (~0.25 MiB a retry). A storm of retries (rate-limit deferrals under overload) left
    # hundreds of MB waiting for the GC: pool processes grew from ~100 to 260-320 MiB. With the
    # tracebacks dropped once the task is over (their text is already logged and stored), all of
    # it is freed at once.
    if state in (states.RETRY, states.FAILURE):
        release_tracebacks(retval)


@worker_ready.connect
def _load_instruments_if_stale(**_kwargs) -> None:
    # A fresh deployment starts with an empty registry, and a restarted one may hold
    # yesterday's: the first worker up loads it (the task is a no-op when it is fresh).
    from app.market.instrument_refresh import REFRESH_TASK

    celery_app.send_task(REFRESH_TASK, kwargs={"only_if_stale": True})
