"""The project's processes as tests, the chaos suite and the benchmarks run them, one wrapper each.

- `ManagedProcess`: any subprocess of the project, its output in a log file, stopped with a
  signal and then SIGKILL; with `own_group=True` in a session of its own, so a stop or a kill
  takes its children (Celery's pool, gunicorn's workers) with it.
- `CeleryWorker`: `celery -A workers.celery_app worker`.
- `StreamProcess`: `python -m workers.stream`.
- `GunicornServer`: the production web server, `gunicorn -c gunicorn.conf.py wsgi:app`, on loopback.
- `LiveServer`: the Flask app on a real socket inside the test process (WebSockets, postbacks).
- `PaperBroker`: the paper broker (`sim.harness`, re-exported here so there is one place to look).

Each runs with the environment of the process that starts it (`os.environ` when `start()` is
called) plus `env`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sim.harness import PaperBroker
from tests.support.ports import free_port
from tests.support.waiting import http_status, wait_for

__all__ = ["ManagedProcess", "ProcessExited", "CeleryWorker", "StreamProcess", "GunicornServer", "LiveServer",
           "PaperBroker", "PROJECT_ROOT"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ProcessExited(RuntimeError):
    """The process ended while something waited for it."""


class ManagedProcess:
    """`args` in a subprocess (cwd: the project), stdout and stderr to `log_path`."""

    def __init__(self, name: str, args: list[str], env: dict | None = None, log_path: Path | str | None = None,
                 own_group: bool = False, stop_signal: int = signal.SIGTERM, stop_timeout: float = 20.0) -> None:
        self.name, self.args = name, list(args)
        self.env_changes = dict(env or {})
        self.env = {**os.environ, **self.env_changes}
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self.own_group, self.stop_signal, self.stop_timeout = own_group, stop_signal, stop_timeout
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "ManagedProcess":
        self.env = {**os.environ, **self.env_changes}  # the environment as it is now, when it starts
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.args, cwd=PROJECT_ROOT, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=self.own_group)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self, chars: int = 6000) -> str:
        """The tail of the process's output."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    tail = log

    def children(self) -> list[int]:
        """PIDs of the process's direct children (Celery's pool processes, gunicorn's workers)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def ensure_alive(self) -> None:
        if not self.alive():
            code = self.process.returncode if self.process else None
            raise ProcessExited(f"{self.name} exited (code {code}):\n{self.log()}")

    def wait_until(self, probe, timeout: float, what: str, interval: float = 0.2, until=bool):
        """`wait_for(probe)`, failing at once (with the log) if the process ends meanwhile."""
        def checked():
            value = probe()
            if not until(value):
                self.ensure_alive()
            return value
        try:
            return wait_for(checked, timeout, interval, what=f"{self.name}: {what}", until=until)
        except AssertionError as exc:
            raise TimeoutError(f"{exc}\n{self.log()}") from None

    def _signal(self, signum: int) -> None:
        if self.own_group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, like a lost machine (the whole group when the process has one)."""
        if self.alive():
            try:
                self._signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            try:
                self._signal(self.stop_signal)
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class CeleryWorker(ManagedProcess):
    """`celery -A workers.celery_app worker`; `start()` returns once it logged "ready." (at INFO)."""

    def __init__(self, queues: str = "orders,batches,webhooks,maintenance", concurrency: int = 2,
                 extra_env: dict | None = None, env: dict | None = None, name: str | None = None,
                 log_level: str = "INFO", **options) -> None:
        self.queues, self.concurrency = queues, concurrency
        node = name or f"test-{os.getpid()}-{time.monotonic_ns()}@%h"
        super().__init__(
            "celery-worker",
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues,
             "-c", str(concurrency), "--pool", "prefork", "-l", log_level, "-n", node,
             "--without-gossip", "--without-mingle"],
            env={**(env or {}), **(extra_env or {})}, **options)

    def start(self, timeout: float = 60.0, wait_ready: bool = True) -> "CeleryWorker":
        super().start()
        if wait_ready:
            self.wait_until(lambda: b"ready." in self.log_path.read_bytes(), timeout, "ready")
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool), like a lost machine."""
        if self.alive() and not self.own_group:
            pool = self.children()
            self.process.kill()
            for pid in pool:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait(10)
        super().kill()


class StreamProcess(ManagedProcess):
    """`python -m workers.stream` (metrics on a free port unless `env` says otherwise)."""

    def __init__(self, env: dict | None = None, **options) -> None:
        options.setdefault("stop_timeout", 15.0)
        super().__init__("stream", [sys.executable, "-m", "workers.stream"],
                         env={"STREAM_METRICS_PORT": "0", "LOG_LEVEL": "INFO", **(env or {})}, **options)

    def start(self, wait_live_s: float | None = None) -> "StreamProcess":
        """Start; with `wait_live_s`, return once its first heartbeat is in Redis."""
        super().start()
        if wait_live_s:
            self.wait_until(self.heartbeat, wait_live_s, "its first heartbeat")
        return self

    @property
    def holder(self) -> str:
        return f"{os.uname().nodename}:{self.process.pid}"

    def heartbeat(self) -> dict | None:
        import redis

        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            raw = client.get(f"stream:heartbeat:{self.holder}")
        finally:
            client.close()
        return json.loads(raw) if raw else None


class GunicornServer(ManagedProcess):
    """`gunicorn -c gunicorn.conf.py wsgi:app` on 127.0.0.1 (a free port unless `port`), in a
    process group of its own; `start()` returns once `ready_path` answers with `ready_statuses`."""

    def __init__(self, port: int | None = None, workers: int = 1, extra_args: list[str] = (),
                 env: dict | None = None, ready_path: str = "/health", ready_statuses=(200, 503),
                 **options) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path, self.ready_statuses = ready_path, tuple(ready_statuses)
        options.setdefault("own_group", True)
        options.setdefault("stop_timeout", 15.0)
        super().__init__("gunicorn", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                      "-b", f"127.0.0.1:{self.port}", *extra_args, "wsgi:app"],
                         env={"PORT": str(self.port), "WEB_CONCURRENCY": str(workers), **(env or {})}, **options)

    def start(self, timeout: float = 60.0, wait: bool = True, probe_timeout: float = 2.0) -> "GunicornServer":
        super().start()
        if wait:
            self.wait_ready(timeout, probe_timeout)
        return self

    def wait_ready(self, timeout: float = 60.0, probe_timeout: float = 2.0) -> None:
        self.wait_until(lambda: http_status(self.url + self.ready_path, probe_timeout), timeout,
                        f"{self.ready_path} answering {self.ready_statuses}", interval=0.3,
                        until=lambda status: status in self.ready_statuses)


class LiveServer:
    """The Flask app on a real socket (threaded werkzeug), for WebSocket and postback tests."""

    def __init__(self, app) -> None:
        from werkzeug.serving import make_server

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
