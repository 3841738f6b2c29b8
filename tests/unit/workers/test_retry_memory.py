"""A retried task frees its exception info at once, not at the cyclic GC's next full pass.

Each retry's ExceptionInfo (billiard) carries copies of every frame's code positions, about
0.25 MiB; left in a reference cycle, a retry storm piled up hundreds of MB in the pool processes
before the GC came round (bench/soak.py's overload run: 100 -> 260-320 MiB).
"""
from __future__ import annotations

import gc
import weakref

import pytest
from celery import Celery
from celery.app.trace import build_tracer
from celery.signals import task_retry

from workers.celery_app import release_tracebacks  # importing it connects the worker's task_postrun handler


@pytest.fixture
def retrying_task():
    app = Celery("retry-memory-test", broker="memory://localhost//", set_as_current=False)

    @app.task(bind=True, max_retries=None, ignore_result=True)
    def deferred(self):
        raise self.retry(countdown=60)  # as a rate-limit deferral does

    return deferred


def test_a_retry_leaves_no_exception_info_for_the_garbage_collector(retrying_task):
    tracer = build_tracer(retrying_task.name, retrying_task, app=retrying_task.app, eager=False, propagate=False)
    infos: list[weakref.ref] = []

    def keep(einfo=None, **_kwargs):
        infos.append(weakref.ref(einfo))

    task_retry.connect(keep, sender=retrying_task, weak=False)
    gc.collect()
    gc.disable()  # what is freed now is freed by reference counting alone
    try:
        for n in range(3):
            state = tracer(f"task-{n}", (), {}, {"id": f"task-{n}", "delivery_info": {}})[1].state
            assert state == "RETRY"
        alive = [ref for ref in infos if ref() is not None]
    finally:
        gc.enable()
        task_retry.disconnect(keep, sender=retrying_task)
    assert len(infos) == 3
    assert alive == []


def test_tracebacks_are_dropped_along_the_cause_and_context_chain():
    def raise_chain():
        try:
            try:
                raise KeyError("first")
            except KeyError as first:
                raise ValueError("second") from first
        except ValueError:
            raise RuntimeError("third")

    with pytest.raises(RuntimeError) as caught:
        raise_chain()
    exc = caught.value
    release_tracebacks(exc)
    chain = [exc, exc.__context__, exc.__context__.__cause__]
    assert [type(e) for e in chain] == [RuntimeError, ValueError, KeyError]
    assert all(e.__traceback__ is None for e in chain)
    release_tracebacks(None)  # a task that returned normally: nothing to do
