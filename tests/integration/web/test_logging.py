"""Request logs never carry the API key (the JSON-lines format and redaction: tests/unit/core/test_logging.py)."""
from app.core.logs import configure_logging


def test_request_logs_never_contain_the_api_key(client, headers, capfd):
    configure_logging("INFO")
    client.get("/accounts?api_key=test-admin-key")
    err = capfd.readouterr().err
    assert "test-admin-key" not in err
