"""The worker's consumer goes on reconnecting when closing a lost broker connection fails (workers/consumer.py)."""
import pytest
from celery.worker.consumer.consumer import Consumer as CeleryConsumer

from workers.consumer import Consumer


def test_a_failed_close_after_the_connection_was_lost_does_not_stop_the_worker(monkeypatch):
    def close_fails(self, exc):  # what kombu 5.7 raises restoring unacked messages through a released client
        raise AttributeError("'NoneType' object has no attribute 'hostname'")

    monkeypatch.setattr(CeleryConsumer, "on_connection_error_after_connected", close_fails)
    consumer = Consumer.__new__(Consumer)
    assert consumer.on_connection_error_after_connected(ConnectionError("Connection closed by server.")) is None


def test_other_errors_still_stop_it(monkeypatch):
    def broken(self, exc):
        raise RuntimeError("a bug")

    monkeypatch.setattr(CeleryConsumer, "on_connection_error_after_connected", broken)
    with pytest.raises(RuntimeError):
        Consumer.__new__(Consumer).on_connection_error_after_connected(ConnectionError())


def test_the_worker_uses_it():
    from celery.utils.imports import symbol_by_name

    from workers.celery_app import celery_app

    assert symbol_by_name(celery_app.conf.worker_consumer) is Consumer
