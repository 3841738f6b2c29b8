"""Webhook test fixtures: a real HTTP receiver on 127.0.0.1 and fast retry settings."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.ports import free_port  # noqa: F401  (webhook tests import it from here)



@dataclass
class Received:
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers `fail_first` requests with 500, then 200; records every request."""

    port: int
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(Received({k: v for k, v in self.headers.items()}, body))
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if failing else 200)
                self.end_headers()
                self.wfile.write(b"boom" if failing else b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def for_order(self, order_id: str) -> list[Received]:
        return [r for r in self.requests if r.json["data"].get("order_id") == order_id]


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
    """register(url, events, account_id="primary", role="primary") → the 201 body; deleted afterwards."""
    created = []

    def _register(url: str, events: list[str], account_id: str = "primary", role: str = "primary",
                  secret: str = "s3cret-for-tests") -> dict:
        response = client.post("/advanced/webhooks", headers=headers[role],
                               json={"url": url, "account_id": account_id, "events": events, "secret": secret})
        assert response.status_code == 201, response.get_json()
        created.append(response.get_json()["webhook_id"])
        return response.get_json()

    yield _register
    for webhook_id in created:
        client.delete(f"/advanced/webhooks/{webhook_id}", headers=headers["admin"])


def poll(fetch, done, timeout: float = 20.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done: {value}")
        time.sleep(interval)
