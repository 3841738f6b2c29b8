"""Celery's Redis transport, made to fail like a lost connection once its connection is released.

When a worker loses Redis, celery 5.7 collects the broker connection, which drops the transport's
client (kombu 5.7). Anything still holding a channel of it — a task finishing and acknowledging its
message (task_acks_late), the consumer restoring unacknowledged messages as it closes — then builds a
Redis client from that client's settings and raises AttributeError ('NoneType' object has no
attribute 'hostname'). Celery only tolerates connection errors there, so the worker stopped
("Unrecoverable error") and orders waited unsent: the chaos test's Redis restarts caught it twice.

Here such a channel raises redis's ConnectionError instead, which Celery handles as what it is: the
ack is logged as not made (the message returns to its queue after the visibility timeout, and a task
run again finds its order already settled) and the consumer goes on reconnecting.
"""
from __future__ import annotations

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

# Set as Celery's broker_transport for redis:// and rediss:// URLs (app.core.task_client).
TRANSPORT = "app.core.broker_transport:Transport"


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was released (Redis was lost): reconnecting")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
