"""Real processes for integration tests: a Celery worker and a live HTTP/WebSocket server."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from werkzeug.serving import make_server

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class CeleryWorker:
    """`celery -A workers.celery_app worker` in a subprocess, with the test environment."""

    def __init__(self, queues: str = "orders,batches,webhooks,maintenance", concurrency: int = 2,
                 extra_env: dict | None = None) -> None:
        self.queues = queues
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="celery-worker-", suffix=".log")[1])

    def start(self, timeout: float = 60.0) -> "CeleryWorker":
        env = {**os.environ, **self.extra_env}
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", self.queues,
             "-c", str(self.concurrency), "--pool", "prefork", "-l", "INFO",
             "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h", "--without-gossip", "--without-mingle"],
            cwd=PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log()}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise TimeoutError(f"celery worker not ready in {timeout}s:\n{self.log()}")

    def children(self) -> list[int]:
        """PIDs of the prefork pool processes (where tasks run)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool), like a lost machine."""
        if self.process and self.process.poll() is None:
            pids = self.children()
            self.process.kill()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()


class LiveServer:
    """The Flask app on a real socket (threaded werkzeug), for WebSocket and postback tests."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()


class StreamProcess:
    """`python -m workers.stream` in a subprocess, with the test environment (plus `env`)."""

    def __init__(self, env: dict | None = None) -> None:
        self.env = {**os.environ, "STREAM_METRICS_PORT": "0", "LOG_LEVEL": "INFO", **(env or {})}
        self.log_path = Path(tempfile.mkstemp(prefix="stream-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    def start(self, wait_live_s: float | None = None) -> "StreamProcess":
        """Start; with `wait_live_s`, return once its first heartbeat is in Redis."""
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "workers.stream"], cwd=PROJECT_ROOT, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        if wait_live_s:
            deadline = time.monotonic() + wait_live_s
            while self.heartbeat() is None:
                if not self.alive():
                    raise RuntimeError(f"stream exited early (code {self.process.returncode}):\n{self.log()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"stream not live within {wait_live_s}s:\n{self.log()}")
                time.sleep(0.2)
        return self

    @property
    def holder(self) -> str:
        return f"{os.uname().nodename}:{self.process.pid}"

    def heartbeat(self) -> dict | None:
        import json

        import redis

        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            raw = client.get(f"stream:heartbeat:{self.holder}")
        finally:
            client.close()
        return json.loads(raw) if raw else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

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
        if getattr(self, "_log", None):
            self._log.close()
