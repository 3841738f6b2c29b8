"""JSON-lines logs carry the correlation id; secrets, emails and phone numbers are redacted."""
import io
import json
import logging

from app.core.logs import configure_logging, correlation_id, redact


def test_redact_secrets_emails_phones():
    text = ('api_key=abc123 access_token: "zzz" Authorization: token key1:tok9 '
            'mail trader@example.com phone +91 9876543210 "api_secret": "shh"')
    redacted = redact(text)
    for secret in ("abc123", "zzz", "key1:tok9", "trader@example.com", "9876543210", "shh"):
        assert secret not in redacted
    assert "[REDACTED]" in redacted and "[EMAIL]" in redacted and "[PHONE]" in redacted


def test_json_lines_with_correlation_id():
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    token = correlation_id.set("corr-42")
    try:
        logging.getLogger("test").info("placing with access_token=SECRET", extra={"api_secret": "s3"})
    finally:
        correlation_id.reset(token)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["correlation_id"] == "corr-42"
    assert line["level"] == "INFO"
    assert "SECRET" not in json.dumps(line) and line["message"].endswith("[REDACTED]")
