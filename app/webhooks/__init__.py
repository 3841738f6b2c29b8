"""Signed webhooks: the registry (registry.py), URL safety (url_safety.py), connections
pinned to the checked address (pinned.py), signing (signing.py) and delivery with retries
(delivery.py; the Celery task is workers/tasks/webhooks.py). Events come from
app/webhooks/events.py."""
