"""Fixtures for the WebSocket relay tests: real sockets against the live server."""
from __future__ import annotations

import pytest

from tests.support.realtime import Socket


@pytest.fixture
def open_socket(live_server, headers):
    """open_socket(path, role) → a connected Socket, closed after the test."""
    opened = []

    def _open(path: str, role: str | None = "admin", query: str = "") -> Socket:
        key = headers[role]["X-API-Key"] if role else None
        sock = Socket(f"{live_server.ws_url}{path}{query}", key)
        opened.append(sock)
        return sock

    yield _open
    for sock in opened:
        sock.close()
