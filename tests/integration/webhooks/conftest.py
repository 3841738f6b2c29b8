"""Webhook test fixtures: a real HTTP receiver on 127.0.0.1, and webhooks registered through the API."""
from __future__ import annotations

import pytest

from tests.support.ports import free_port
from tests.support.webhooks import Receiver


@pytest.fixture
def receiver():
    started = []

    def _start(fail_first: int = 0, port: int | None = None) -> Receiver:
        server = Receiver(port or free_port(), fail_first).start()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture
def register(client, headers):
    """register(url, events, account_id="primary", role="primary", legacy_secret_header=False) → the 201
    body; deleted afterwards."""
    created = []

    def _register(url: str, events: list[str], account_id: str = "primary", role: str = "primary",
                  secret: str = "s3cret-for-tests", legacy_secret_header: bool = False) -> dict:
        response = client.post("/advanced/webhooks", headers=headers[role],
                               json={"url": url, "account_id": account_id, "events": events, "secret": secret,
                                     "legacy_secret_header": legacy_secret_header})
        assert response.status_code == 201, response.get_json()
        created.append(response.get_json()["webhook_id"])
        return response.get_json()

    yield _register
    for webhook_id in created:
        client.delete(f"/advanced/webhooks/{webhook_id}", headers=headers["admin"])
