"""The Celery worker's consumer, surviving a Redis restart.

celery 5.7's consumer, on losing its broker connection, collects the connection (which drops the
transport's client) and then closes it; closing a Redis channel restores its unacknowledged
messages through a new client built from that client's settings — gone, so it raises
AttributeError ('NoneType' object has no attribute 'hostname'). Only connection errors are ignored
there, so the worker process stopped ("Unrecoverable error") and orders waited unsent until someone
restarted it (the chaos test's Redis restarts caught it). The connection is already dropped at that
point and the unacknowledged messages go back to their queues by the visibility timeout (task_acks_late),
so this consumer logs the failed cleanup and lets the reconnect cycle go on.
"""
from __future__ import annotations

import logging

from celery.worker.consumer.consumer import Consumer as CeleryConsumer

log = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    def on_connection_error_after_connected(self, exc):
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError:
            log.warning("broker connection lost; closing it failed as well (its transport was already "
                        "released): reconnecting", exc_info=True)
