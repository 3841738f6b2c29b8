"""Batch orders: legs placed together (a Celery chord) that end complete or flat."""
