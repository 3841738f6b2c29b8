"""Which ticker closes mean the broker refused the access token (the session is dead), as
KiteTicker reports them through autobahn: the pool stops retrying those, and only those."""
import pytest

from workers.stream.pool import is_session_refusal

UPGRADE_FAILED = "connection was closed uncleanly (WebSocket connection upgrade failed ({}))"


@pytest.mark.parametrize("code, reason", [
    (1008, "Session expired: log in again."),  # the broker ended the socket of a dead session
    (1008, None),
    (1006, UPGRADE_FAILED.format("403 - Forbidden")),  # the handshake refused the token
])
def test_a_dead_session(code, reason):
    assert is_session_refusal(code, reason)


@pytest.mark.parametrize("code, reason", [
    (1006, UPGRADE_FAILED.format("429 - TooManyRequests")),  # over 3 sockets per key: wait, retry
    (1006, UPGRADE_FAILED.format("503 - Service Unavailable")),
    (1006, "connection was closed uncleanly (peer dropped the TCP connection without previous "
           "WebSocket closing handshake)"),
    (1006, "connection was closed uncleanly (Connection refused by 127.0.0.1:4030)"),
    (1000, None),
    (1001, "going away"),
])
def test_other_closes_are_retried(code, reason):
    assert not is_session_refusal(code, reason)
