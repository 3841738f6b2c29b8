"""Worker processes: the Celery app and its tasks (`celery_app`, `tasks/`) and the stream (`stream/`)."""
