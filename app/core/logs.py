"""JSON-lines logs with the request's correlation id and secrets redacted."""
from __future__ import annotations

import contextvars
import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")

_REDACTIONS = [
    # Kite's "Authorization: token api_key:access_token".
    (re.compile(r"(?i)(token\s+)[A-Za-z0-9]+:[A-Za-z0-9]+"), r"\1[REDACTED]"),
    # "Authorization: Bearer <token>", and a JWT wherever it appears (three base64url parts, header first).
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[REDACTED]"),
    # key=value and "key": "value" forms of anything secret-looking.
    (re.compile(r'(?i)("?(?:api[_-]?key|api[_-]?secret|access[_-]?token|request[_-]?token|secret|password|'
                r'authorization|x-api-key|checksum)"?\s*[:=]\s*"?)([^"\s,&;}]+)'), r"\1[REDACTED]"),
    # The Kite login's state in a callback URL (app.kite_session.login): single use, but a credential until used.
    (re.compile(r"([?&]state=)[^&\s\"]+"), r"\1[REDACTED]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    (re.compile(r"(?<![\w.])(?:\+?91[\s-]?)?[6-9]\d{9}(?![\w.])"), "[PHONE]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingJsonFormatter(JsonFormatter):
    def process_log_record(self, log_record: dict) -> dict:
        log_record["correlation_id"] = correlation_id.get()
        for key, value in list(log_record.items()):
            if isinstance(value, str):
                log_record[key] = redact(value)
        return super().process_log_record(log_record)


def configure_logging(level: str = "INFO", stream=None) -> None:
    """Replace root handlers with one JSON-lines handler (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    ))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing.formatter, RedactingJsonFormatter):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
