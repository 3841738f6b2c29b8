"""A throwaway stack for benchmarks: private database and Redis DB, paper broker, worker, web server.

Uses the same environment set-up as the tests (PostgreSQL and Redis when reachable,
SQLite and an embedded Redis otherwise) so figures come from the real parts. The web
process is gunicorn with the production settings (gunicorn.conf.py, one gevent worker),
not a server thread inside the benchmark, which would share its interpreter. The processes are
the tests' own wrappers (tests/support/processes.py).
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.environment import API_KEYS, configure_test_environment, use_paper_broker  # noqa: E402
from tests.support.processes import CeleryWorker, GunicornServer, PaperBroker  # noqa: E402

ACCOUNT = {"api_key": "bench-primary", "api_secret": "bench-secret", "access_token": "bench-token"}


@contextmanager
def bench_stack(worker_concurrency: int = 4, broker_faults: dict | None = None, env: dict | None = None,
                web_workers: int = 1, processes: dict | None = None):
    """Yields (app, web server, broker, headers); everything stops afterwards. `processes`, when given,
    is filled with the processes started ("web", "worker", "broker"), for a benchmark's CPU figures."""
    environment = configure_test_environment()
    os.environ.update(env or {})
    from alembic import command

    from app import create_app
    from app import accounts as account_service
    from app.cli import alembic_config
    from app.core.db import session_scope
    from workers.tasks.maintenance import refresh_instruments

    command.upgrade(alembic_config(), "head")
    app = create_app()  # for in-process lookups (registry, database); HTTP goes to gunicorn
    server = GunicornServer(workers=web_workers, env={"LOG_LEVEL": "WARNING"})
    broker = PaperBroker(seed=3, postback_url=f"{server.url}/postback/kite",
                         accounts={ACCOUNT["api_key"]: (ACCOUNT["api_secret"], ACCOUNT["access_token"])},
                         cash=1e9, daily_expiry=False).start()   # measures latency, not funds or 06:00
    worker = None
    try:
        use_paper_broker(broker)  # this process's settings too: create_app above has read them
        with session_scope() as session:
            account_service.add_account(session, "primary", **ACCOUNT)
        refresh_instruments.run()
        server.start(timeout=30)  # after the settings above, which it reads from the environment
        worker = CeleryWorker(concurrency=worker_concurrency).start()
        if processes is not None:
            processes.update(web=server, worker=worker, broker=broker)
        if broker_faults:
            broker.set_faults(**broker_faults)
        yield app, server, broker, {"X-API-Key": API_KEYS["admin"]}
    finally:
        if worker:
            worker.stop()
        broker.stop()
        server.stop()
        environment.close()
