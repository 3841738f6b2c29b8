"""The environment of the tests that run the real parts: a private PostgreSQL database and
Redis DB (or SQLite and an embedded Redis when none is reachable), and the service's variables.

`ensure_test_environment()` sets it up once per test process, and only when integration or
end-to-end tests are about to be imported (tests/conftest.py): unit tests never pay for it. It
must be in `os.environ` before anything reads the settings for an integration test (modules such
as `workers.celery_app` do at import) and before any worker subprocess starts, which inherit it.
Benchmarks call `configure_test_environment()` for a stack of their own.
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

# The paper-broker accounts every integration test trades on.
BROKER_ACCOUNTS = {
    "primary": {"api_key": "paper-primary", "api_secret": "paper-secret-primary", "access_token": "tok-primary"},
    "other": {"api_key": "paper-other", "api_secret": "paper-secret-other", "access_token": "tok-other"},
}


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


REDIS_CLAIM_KEY = "ticker-test:claim:{db}"  # in DB 0 of the server; expires if a run dies without cleaning up
REDIS_CLAIM_TTL_S = 4 * 3600


def _claim_database(client) -> tuple[int, callable]:
    """A Redis DB number (1-15) no other test run on this server holds, claimed until released; if all
    are held, a random one (as before claims existed)."""
    token = f"{os.getpid()}-{random.random()}"
    for db in random.sample(range(1, 16), 15):
        key = REDIS_CLAIM_KEY.format(db=db)
        if client.set(key, token, nx=True, ex=REDIS_CLAIM_TTL_S):
            def release(key=key) -> None:
                if client.get(key) == token.encode():
                    client.delete(key)
            return db, release
    return random.randint(1, 15), lambda: None


def _redis() -> tuple[str, callable]:
    base = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    try:
        client = redis.Redis.from_url(base, socket_connect_timeout=2)
        client.ping()
        # A DB of its own, so concurrent runs on one server don't take (or flush) each other's tasks.
        db, release = _claim_database(client)
        url = base.rsplit("/", 1)[0] + f"/{db}" if base.count("/") >= 3 else f"{base}/{db}"
        mine = redis.Redis.from_url(url)
        mine.flushdb()

        def cleanup() -> None:
            mine.flushdb()
            release()
        return url, cleanup
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
        # As the test broker's sessions (daily_expiry=False): a run that spans 06:00 IST keeps its sessions.
        "KITE_SESSION_EXPIRY_IST": "off",
        "WEBHOOK_RETRY_BASE_S": "0.2",
        "WEBHOOK_MAX_ATTEMPTS": "4",
        "WEBHOOK_TIMEOUT_S": "2",
    })
    env = TestEnvironment(database_url=database_url, redis_url=redis_url, backend=backend, cleanups=cleanups)
    print(f"test database: {backend}; redis: {redis_url}")
    return env


def use_paper_broker(broker) -> None:
    """Point the service at `broker`: this process's settings, and the environment that the
    workers and stream processes it starts afterwards inherit."""
    from app.core import config

    os.environ["KITE_API_ROOT"] = broker.root
    os.environ["KITE_WS_ROOT"] = broker.ws_root
    config.configure(config.get_settings(), kite_api_root=broker.root, kite_ws_root=broker.ws_root)


_session_environment: TestEnvironment | None = None


def ensure_test_environment() -> TestEnvironment:
    """The test process's environment, set up on first use (later calls return it)."""
    global _session_environment
    if _session_environment is None:
        _session_environment = configure_test_environment()
        _forget_settings_read_before()
    return _session_environment


def close_test_environment() -> None:
    """Drop the database and empty the Redis DB of `ensure_test_environment()`, if it ran."""
    global _session_environment
    if _session_environment is not None:
        _session_environment.close()
        _session_environment = None


def _forget_settings_read_before() -> None:
    """Whatever this process built from the environment before it was set (a unit test that read
    the settings, a module that configured Celery at import) is built again from the new one."""
    import sys

    if "app.core.config" in sys.modules:
        sys.modules["app.core.config"].configure()
    if "app.core.db" in sys.modules:
        sys.modules["app.core.db"].reset_engine()
    task_client = sys.modules.get("app.core.task_client")
    if task_client is not None:
        task_client.celery_client.cache_clear()
        celery_app = sys.modules.get("workers.celery_app")
        if celery_app is not None:
            task_client.configure_celery(celery_app.celery_app)
