"""The `stream` process under test: `python -m workers.stream` as a subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class StreamProcess:
    def __init__(self, env: dict | None = None) -> None:
        self.env = {**os.environ, "STREAM_METRICS_PORT": "0", "LOG_LEVEL": "INFO", **(env or {})}
        self.log_path = Path(tempfile.mkstemp(prefix="stream-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    def start(self) -> "StreamProcess":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "workers.stream"], cwd=PROJECT_ROOT, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        return self

    @property
    def holder(self) -> str:
        return f"{os.uname().nodename}:{self.process.pid}"

    def heartbeat(self, redis_url: str | None = None) -> dict | None:
        client = redis.Redis.from_url(redis_url or self.env["REDIS_URL"])
        raw = client.get(f"stream:heartbeat:{self.holder}")
        return json.loads(raw) if raw else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class ChannelListener:
    """Collects messages of Redis channels (pattern) with their arrival time."""

    def __init__(self, redis_url: str, pattern: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(pattern)

    def collect(self, seconds: float) -> list[tuple[float, str, dict]]:
        got, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message and message["type"] == "pmessage":
                got.append((time.monotonic(), message["channel"].decode(), json.loads(message["data"])))
        return got

    def first(self, predicate, timeout: float) -> tuple[float, str, dict] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message and message["type"] == "pmessage":
                item = (time.monotonic(), message["channel"].decode(), json.loads(message["data"]))
                if predicate(item):
                    return item
        return None

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


@pytest.fixture(scope="module")
def nifty_book(instruments):
    """The NIFTY index, its near future and the nearest expiry's 20 strikes around the middle."""
    from app.instruments import underlying_instruments

    found = underlying_instruments(instruments.all(), "NIFTY")
    expiry = min(o.expiry for o in found.options)
    options = sorted((o for o in found.options if o.expiry == expiry), key=lambda o: (o.strike, o.instrument_type))
    middle = len(options) // 2
    return found.index, found.futures[0], options[middle - 20: middle + 20]


@pytest.fixture(scope="module")
def subscribed(app, headers, nifty_book):
    from app.db import session_scope

    client = app.test_client()
    from app.models import Subscription

    with session_scope() as session:
        session.query(Subscription).delete()
    index, future, options = nifty_book
    tokens = [index.instrument_token, future.instrument_token] + [o.instrument_token for o in options]
    response = client.post("/subscriptions/bulk", headers=headers["admin"],
                           json={"instrument_tokens": tokens, "requested_mode": "FULL"})
    assert response.status_code == 200, response.json
    yield tokens
    with session_scope() as session:
        session.query(Subscription).delete()


@pytest.fixture(scope="module")
def stream(broker_env, accounts, instruments, subscribed):
    process = StreamProcess().start()
    yield process
    process.stop()
