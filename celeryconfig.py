"""Celery configuration, the same for the workers and for the web's task client
(app.core.task_client.configure_celery loads it and adds the broker URL and visibility
timeout from the settings)."""
from zoneinfo import ZoneInfo

from celery.schedules import crontab
from kombu import Exchange, Queue

# JSON only: no pickle from the broker into the worker.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# A task is acknowledged only after it finished, and a worker child killed mid-task
# (OOM, SIGKILL) puts its message back instead of dropping it. Order tasks are
# idempotent (tag reconciliation), so running one again is safe.
task_acks_late = True
task_reject_on_worker_lost = True
# One message at a time per process: an order must not wait behind another
# prefetched one, and an unacked prefetched message is what redelivery duplicates.
worker_prefetch_multiplier = 1
task_track_started = True
result_expires = 24 * 3600
broker_connection_retry_on_startup = True

# Redis transport: a message not acknowledged within visibility_timeout is handed to
# another worker. It must exceed the longest a task can hold a message: hard time
# limit (60 s) + broker call timeout (7 s) + the longest retry countdown held by the
# worker as an ETA message (ORDER_RETRY_CAP_S, 30 s). 300 s leaves a wide margin
# while a lost worker's orders are still redelivered within five minutes (the beat
# reconciler repairs their status sooner). CELERY_VISIBILITY_TIMEOUT (the settings) sets it;
# configure_celery puts it into broker_transport_options.
task_time_limit = 60
task_soft_time_limit = 45

task_default_queue = "maintenance"
task_queues = [
    Queue("orders", Exchange("orders"), routing_key="orders"),
    Queue("batches", Exchange("batches"), routing_key="batches"),
    Queue("webhooks", Exchange("webhooks"), routing_key="webhooks"),
    Queue("maintenance", Exchange("maintenance"), routing_key="maintenance"),
]
task_routes = {
    "workers.tasks.orders.*": {"queue": "orders"},
    "workers.tasks.batches.*": {"queue": "batches"},
    # The kill switch runs beside the batches, never behind a backlog of single orders.
    "workers.tasks.risk.*": {"queue": "batches"},
    "workers.tasks.webhooks.*": {"queue": "webhooks"},
    "workers.tasks.maintenance.*": {"queue": "maintenance"},
    "workers.tasks.risk_limits.*": {"queue": "maintenance"},
}



class crontab_ist(crontab):
    """A crontab read on India Standard Time (Kite's clock) while Celery itself keeps UTC."""
    tz = ZoneInfo("Asia/Kolkata")


beat_schedule = {
    "reconcile-open-orders": {"task": "workers.tasks.orders.reconcile_open_orders", "schedule": 5.0},
    "settle-stuck-batches": {"task": "workers.tasks.batches.settle_stuck_batches", "schedule": 15.0},
    # A kill switch whose run went silent (its worker died) is carried on by another.
    "resume-stalled-kill-switches": {"task": "workers.tasks.risk.resume_stalled_kill_switches", "schedule": 10.0},
    "requeue-stranded-webhooks": {"task": "workers.tasks.webhooks.requeue_stranded_deliveries", "schedule": 60.0},
    # Sessions whose 06:00 IST passed with no broker call to say so; held orders whose TTL lapsed.
    "check-kite-sessions": {"task": "workers.tasks.maintenance.check_kite_sessions", "schedule": 30.0},
    # The day's P&L of accounts with a daily loss limit (app.risk.daily_loss: intake recomputes a figure
    # older than 10 s); a late run is dropped, the next one is due anyway.
    "refresh-daily-pnl": {"task": "workers.tasks.risk_limits.refresh_daily_pnl", "schedule": 5.0,
                          "options": {"expires": 5.0}},
    # Kite publishes the day's instrument dump around 08:00 IST; load it before the 09:15 open.
    "refresh-instruments-daily": {
        "task": "workers.tasks.maintenance.refresh_instruments",
        "schedule": crontab_ist(hour=8, minute=15, day_of_week="mon-fri"),
    },
}
