"""The kill switch's runs (batches queue), and beat's watch over runs that went silent.

`run_kill_switch` carries an operation on for one run's budget (app.risk.kill_switch.run), then
schedules the next run until the operation has ended. Acknowledged late and rejected when its
worker is lost, so a run cut short is delivered again; a run killed with its whole worker is picked
up by `resume_stalled_kill_switches` (beat) once its heartbeat is stale. Runs never overlap: each
takes the operation's lease first.
"""
from __future__ import annotations

from app.risk import kill_switch
from workers.celery_app import celery_app


@celery_app.task(name=kill_switch.RUN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
                 max_retries=None)
def run_kill_switch(self, kill_switch_id: str, stale_after_s: float | None = None) -> dict:
    """One run of the kill switch `kill_switch_id`; `stale_after_s`: how silent a run holding it must be
    before this one takes over (default: app.risk.kill_record.stale_after_s)."""
    result = kill_switch.run(kill_switch_id, stale_after=stale_after_s)
    if result.again_in_s is not None:
        raise self.retry(countdown=result.again_in_s)
    return {"kill_switch_id": kill_switch_id, "status": result.status}


@celery_app.task(name="workers.tasks.risk.resume_stalled_kill_switches", acks_late=True, ignore_result=True)
def resume_stalled_kill_switches(stale_after_s: float | None = None) -> list[str]:
    """Beat: send again the running kill switches whose run went silent."""
    return kill_switch.resume_stalled(stale_after_s)
