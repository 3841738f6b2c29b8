"""The whole service as separate processes, for breaking on purpose.

Everything the production Procfile runs — gunicorn web, Celery workers, beat, the
stream — plus the paper broker and a private Redis (append-only, so a restart
loses nothing, like a managed Redis) on a database of its own. The test process
is only a client: it talks HTTP, reads Redis, and kills things.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from launcher.embedded_redis import EmbeddedRedis
from tests.support.ports import free_port
from tests.support.processes import (PROJECT_ROOT, CeleryWorker, GunicornServer, ManagedProcess, PaperBroker,
                                     StreamProcess)

ACCOUNTS = {"primary": ("chaos-primary", "chaos-secret-1", "chaos-token-1"),
            "other": ("chaos-other", "chaos-secret-2", "chaos-token-2")}
ADMIN_KEY = "chaos-admin-key"


class ChaosStack:
    def __init__(self, database_url: str, workers: int = 2) -> None:
        self.logdir = Path(tempfile.mkdtemp(prefix="chaos-"))
        self.base_database_url = database_url
        self.worker_count = workers
        self.procs: dict[str, ManagedProcess] = {}
        self.worker_seq = 0

    # ---- set-up --------------------------------------------------------------------------
    def _database(self) -> str:
        if not self.base_database_url.startswith("postgresql"):
            return f"sqlite:///{self.logdir / 'chaos.db'}"
        url = make_url(self.base_database_url)
        self.db_name = f"ticker_chaos_{secrets.token_hex(4)}"
        self._admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        return url.set(database=self.db_name).render_as_string(hide_password=False)

    def start(self) -> "ChaosStack":
        self.redis_dir = self.logdir / "redis"
        self.redis_dir.mkdir()
        self.redis = EmbeddedRedis(data_dir=self.redis_dir).start()
        self.redis_port = self.redis.port
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.broker = PaperBroker(seed=11, postback_url=f"{self.url}/postback/kite",
                                  accounts={k: (s, t) for k, s, t in ACCOUNTS.values()},
                                  cash=1e9, daily_expiry=False).start()   # about faults, not funds or 06:00
        self.env = {**os.environ, "DATABASE_URL": self._database(), "REDIS_URL": self.redis.url,
                    "KITE_API_ROOT": self.broker.root, "KITE_WS_ROOT": self.broker.ws_root,
                    "API_KEYS": f"{ADMIN_KEY}=*", "PORT": str(self.web_port), "WEB_CONCURRENCY": "1",
                    "STREAM_METRICS_PORT": "0", "LOG_LEVEL": "WARNING", "BROKER_TIMEOUT_S": "2",
                    "ORDER_RETRY_BASE_S": "0.2", "ORDER_RETRY_CAP_S": "2", "CELERY_VISIBILITY_TIMEOUT": "30",
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self._run([sys.executable, "-m", "alembic", "upgrade", "head"])
        for account_id, (key, secret, token) in ACCOUNTS.items():
            self._run([sys.executable, "-m", "flask", "--app", "wsgi", "accounts", "add", account_id,
                       "--api-key", key, "--api-secret", secret, "--access-token", token])
        self._run([sys.executable, "-m", "flask", "--app", "wsgi", "instruments", "refresh"])
        # Each process in a group of its own, so a kill takes the Celery pool children with it.
        self._add("web", GunicornServer(port=self.web_port, env=self.env, log_path=self.logdir / "web.log")
                  .start(wait=False))
        self._add("beat", ManagedProcess("beat", ["celery", "-A", "workers.celery_app", "beat", "-l", "WARNING",
                                                  "--schedule", str(self.logdir / "beat-schedule")],
                                         env=self.env, log_path=self.logdir / "beat.log", own_group=True).start())
        self._add("stream", StreamProcess(env=self.env, log_path=self.logdir / "stream.log", own_group=True).start())
        for _ in range(self.worker_count):
            self.start_worker()
        self.procs["web"].wait_ready(timeout=60)
        return self

    def _run(self, args: list[str]) -> None:
        result = subprocess.run(args, cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def _add(self, name: str, process: ManagedProcess) -> ManagedProcess:
        self.procs[name] = process
        return process

    def start_worker(self) -> ManagedProcess:
        self.worker_seq += 1
        name = f"worker-{self.worker_seq}"
        worker = CeleryWorker(concurrency=2, log_level="WARNING", name=f"{name}@%h", env=self.env,
                              log_path=self.logdir / f"{name}.log", own_group=True)
        return self._add(name, worker.start(wait_ready=False))  # at WARNING it never says "ready."

    def workers(self) -> list[ManagedProcess]:
        return [p for n, p in self.procs.items() if n.startswith("worker-") and p.alive()]

    # ---- faults --------------------------------------------------------------------------
    def restart_redis(self, down_s: float = 1.5) -> None:
        self.redis.stop()
        time.sleep(down_s)
        self.redis = EmbeddedRedis(port=self.redis_port, data_dir=self.redis_dir).start()

    def kill_worker(self, victim: ManagedProcess) -> None:
        victim.kill()
        self.start_worker()

    # ---- tear-down -----------------------------------------------------------------------
    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.broker.stop()
        self.redis.stop()
        if getattr(self, "_admin", None):
            with self._admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": self.db_name})
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}"'))
            self._admin.dispose()
