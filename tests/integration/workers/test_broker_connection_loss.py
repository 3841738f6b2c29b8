"""A worker that loses Redis goes on: what it still does through the lost connection fails as a
connection error, which Celery handles, not as an AttributeError that stops the worker
(app/core/broker_transport.py; the chaos test's Redis restarts found it)."""
from __future__ import annotations

import logging
import uuid

import pytest
from celery import Celery
from kombu import Queue

from app.core import broker_transport
from app.core.task_client import configure_celery


@pytest.fixture
def celery_on_private_redis(private_redis, settings_override):
    settings_override(redis_url=private_redis.url)
    return configure_celery(Celery("broker-loss-test", set_as_current=False))


def _unacked_message(connection, queue_name: str):
    """A message taken off `queue_name` and not yet acknowledged, as a worker holds one (acks_late)."""
    queue = Queue(queue_name)
    with connection.Producer() as producer:
        producer.publish({"order": "o-1"}, routing_key=queue_name, declare=[queue])
    simple = connection.SimpleQueue(queue, no_ack=False)
    return simple.get(block=True, timeout=5)


def test_the_workers_use_it(celery_on_private_redis):
    with celery_on_private_redis.connection_for_read() as connection:
        assert isinstance(connection.transport, broker_transport.Transport)


def test_a_task_acknowledged_after_redis_was_lost_is_logged_not_fatal(celery_on_private_redis, private_redis,
                                                                      caplog):
    queue_name = f"broker-loss-{uuid.uuid4().hex[:8]}"
    connection = celery_on_private_redis.connection_for_read()
    message = _unacked_message(connection, queue_name)
    errors = connection.connection_errors

    # Redis goes away while the task runs; the consumer collects its connection, as Celery does, and
    # the channel's Redis connections are gone with it (as the worker's event loop drops them).
    private_redis.stop()
    connection.collect()
    message.channel._disconnect_pools()
    private_redis.start()

    # The task ends and its message is acknowledged through the released connection (celery's
    # Request.acknowledge → Message.ack_log_error with the connection's errors).
    with caplog.at_level(logging.CRITICAL, logger="broker-loss-test"):
        message.ack_log_error(logging.getLogger("broker-loss-test"), errors)
    assert "Couldn't ack" in caplog.text
