"""The test session's environment: a private PostgreSQL database and Redis DB (or embedded ones).

Runs before any application module is imported, because celeryconfig reads the
environment at import time.
"""
from __future__ import annotations

import os
import random
import secrets
import tempfile
from dataclasses import dataclass, field

import redis
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"

API_KEYS = {"admin": "test-admin-key", "primary": "test-primary-key", "other": "test-other-key"}


@dataclass
class TestEnvironment:
    database_url: str
    redis_url: str
    backend: str
    cleanups: list = field(default_factory=list)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # cleanup must not hide the test outcome
                print(f"test environment cleanup failed: {exc}")


def _postgres(env: TestEnvironment | None) -> tuple[str, callable] | None:
    base = os.environ.get("DATABASE_URL") or DEFAULT_PG
    if not base.startswith("postgresql"):
        return None
    url = make_url(base)
    admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            name = f"ticker_test_{secrets.token_hex(4)}"
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL not reachable at {url.render_as_string(hide_password=True)} ({type(exc).__name__}); using SQLite")
        admin.dispose()
        return None

    def drop() -> None:
        from app.core.db import reset_engine

        reset_engine()
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


def _redis() -> tuple[str, callable]:
    base = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    try:
        client = redis.Redis.from_url(base, socket_connect_timeout=2)
        client.ping()
        # A DB of its own, so concurrent runs on one server don't take each other's tasks.
        db = random.randint(1, 15)
        url = base.rsplit("/", 1)[0] + f"/{db}" if base.count("/") >= 3 else f"{base}/{db}"
        mine = redis.Redis.from_url(url)
        mine.flushdb()
        return url, mine.flushdb
    except redis.RedisError:
        from launcher.embedded_redis import EmbeddedRedis

        server = EmbeddedRedis().start()
        print(f"Redis not reachable at {base}; started an embedded server at {server.url}")
        return server.url, server.stop


def configure_test_environment() -> TestEnvironment:
    cleanups = []
    pg = _postgres(None)
    if pg:
        database_url, drop = pg
        cleanups.append(drop)
        backend = "postgresql"
    else:
        path = os.path.join(tempfile.mkdtemp(prefix="ticker-test-"), "ticker.db")
        database_url, backend = f"sqlite:///{path}", "sqlite"
    redis_url, redis_cleanup = _redis()
    cleanups.append(redis_cleanup)

    os.environ.update({
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "API_KEYS": ";".join([f"{API_KEYS['admin']}=*", f"{API_KEYS['primary']}=primary",
                              f"{API_KEYS['other']}=other"]),
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "LOG_LEVEL": "WARNING",
        "ORDER_RETRY_BASE_S": "0.2",
        "ORDER_RETRY_CAP_S": "2",
        "BROKER_TIMEOUT_S": "3",
        "WEBHOOK_RETRY_BASE_S": "0.2",
        "WEBHOOK_MAX_ATTEMPTS": "4",
        "WEBHOOK_TIMEOUT_S": "2",
    })
    env = TestEnvironment(database_url=database_url, redis_url=redis_url, backend=backend, cleanups=cleanups)
    print(f"test database: {backend}; redis: {redis_url}")
    return env
