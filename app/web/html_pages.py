"""Our own HTML pages (the dashboard, the API docs): served fresh, under a Content-Security-Policy."""
from __future__ import annotations

from pathlib import Path

from flask import send_from_directory


def html_page(directory: Path, filename: str, content_security_policy: str):
    response = send_from_directory(directory, filename, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = content_security_policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
