"""Send Celery tasks by name from web, CLI and domain code, without importing `workers`.

The client shares the workers' configuration (`celeryconfig`: broker, queues, routes)
but is not the current app, so a worker process keeps its own as `current_app`.
"""
from __future__ import annotations

from functools import lru_cache

from celery import Celery


@lru_cache(maxsize=1)
def celery_client() -> Celery:
    client = Celery("ticker", set_as_current=False)
    client.config_from_object("celeryconfig")
    return client


def send_task(name: str, args: list | tuple = (), kwargs: dict | None = None, **options):
    return celery_client().send_task(name, args=list(args), kwargs=kwargs or {}, **options)
