"""A task enqueued through the web app runs in a real Celery worker and writes to the database."""
from celery.result import AsyncResult
from sqlalchemy import func, select

from app.core.db import session_scope
from app.models import Instrument
from workers.celery_app import celery_app


def test_refresh_enqueued_by_web_runs_in_worker(client, headers, celery_worker, instruments):
    with session_scope() as session:
        before = session.scalar(select(func.max(Instrument.updated_at)))
    response = client.post("/instruments/refresh", headers=headers["admin"])
    assert response.status_code == 202
    count = AsyncResult(response.json["task_id"], app=celery_app).get(timeout=60)
    with session_scope() as session:
        stored = session.scalar(select(func.count()).select_from(Instrument))
        after = session.scalar(select(func.max(Instrument.updated_at)))
    assert count == stored > 100
    assert after > before  # the worker rewrote the rows


def test_refresh_needs_admin(client, headers):
    assert client.post("/instruments/refresh", headers=headers["primary"]).status_code == 403
