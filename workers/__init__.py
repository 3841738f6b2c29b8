"""The Celery application: `celery -A workers worker|beat|flower`."""
from celery import Celery
from celery.signals import worker_process_init

TASK_MODULES = [
    "workers.tasks.batches",
    "workers.tasks.maintenance",
    "workers.tasks.orders",
    "workers.tasks.webhooks",
]

app = Celery("ticker", include=TASK_MODULES)
app.config_from_object("celeryconfig")


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    # Prefork children must not share the parent's database connections.
    from app.db import reset_engine

    reset_engine()
