"""Fixtures for the dashboard's browser tests: the stream process and headless Chromium.

The page runs against the real stack: the live server (web), a Celery worker,
the paper broker and `python -m workers.stream`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

from tests.support.processes import PROJECT_ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class StreamProcess:
    """`python -m workers.stream` in a subprocess, with the test environment."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="stream-", suffix=".log")[1])

    def start(self, redis_url: str, timeout: float = 40.0) -> "StreamProcess":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "workers.stream"], cwd=PROJECT_ROOT,
                                        env=dict(os.environ), stdout=self._log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + timeout
        try:
            # Live once it has registered itself (heartbeat / member of the pool).
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"stream exited early (code {self.process.returncode}):\n{self.log()}")
                if client.zcard("stream:members") or next(client.scan_iter("stream:heartbeat:*", count=100), None):
                    return self
                time.sleep(0.2)
        finally:
            client.close()
        raise TimeoutError(f"stream not live within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if getattr(self, "_log", None):
            self._log.close()


@pytest.fixture(scope="session")
def stream(test_env, broker_env, accounts, instruments):
    process = StreamProcess().start(test_env.redis_url)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.js_errors = errors
    yield page
    context.close()
