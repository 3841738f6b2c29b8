"""The Celery configuration for every process, and a client that sends tasks by name.

Web, CLI and domain code send tasks through `send_task` / `celery_client()` without
importing `workers`. The client shares the workers' configuration but is not the
current app, so a worker process keeps its own as `current_app`.
"""
from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from celery import Celery

from app.core import broker_transport
from app.core.config import get_settings


def configure_celery(celery: Celery) -> Celery:
    """`celeryconfig` (queues, routes, acks, schedule) plus the broker and visibility timeout of the settings."""
    settings = get_settings()
    celery.config_from_object("celeryconfig")
    transport = {"visibility_timeout": settings.celery_visibility_timeout}
    celery.conf.update(broker_url=settings.redis_url, result_backend=settings.redis_url,
                       broker_transport_options=transport, result_backend_transport_options=transport)
    if urlsplit(settings.redis_url).scheme in ("redis", "rediss"):  # (a sentinel:// URL keeps kombu's own)
        celery.conf.broker_transport = broker_transport.TRANSPORT  # survives a Redis restart
    return celery


@lru_cache(maxsize=1)
def celery_client() -> Celery:
    return configure_celery(Celery("ticker", set_as_current=False))


def send_task(name: str, args: list | tuple = (), kwargs: dict | None = None, **options):
    return celery_client().send_task(name, args=list(args), kwargs=kwargs or {}, **options)


class SentTask:
    """What `send_untracked` gives back: the task's id, and no result backend behind it."""

    __slots__ = ("id", "ignored")  # Celery's send_task sets `ignored` on the result it builds

    def __init__(self, task_id: str) -> None:
        self.id = task_id


def send_untracked(name: str, args: list | tuple = (), kwargs: dict | None = None, **options) -> SentTask:
    """Send a task whose outcome is recorded elsewhere (an order's, a webhook delivery's: in the database).
    Its result is not stored, and the sender neither subscribes to it nor builds a result backend for it:
    per order, Celery would otherwise subscribe the web process to a result channel that nothing reads,
    building a result backend per request greenlet (a tenth of the web's CPU per order, under load), and
    the worker would write two results."""
    return send_task(name, args, kwargs, ignore_result=True, add_to_parent=False, result_cls=SentTask, **options)
