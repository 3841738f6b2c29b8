"""A migrated database of one test's own, which this process uses while the test runs.

For tests that change every row of a table (re-encrypting every stored secret) or register
accounts the session's other tests must not meet: the shared database never sees them. The
Flask test client and `new_session()` use it too (both read the settings); the session's worker
subprocesses do not.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def private_database() -> Iterator[str]:
    from alembic import command

    from app.cli import alembic_config
    from app.core import config
    from app.core.db import reset_engine
    from tests.support.environment import _postgres

    before = config.get_settings()
    created = _postgres(None) if before.database_url.startswith("postgresql") else None
    if created:
        url, drop = created
    else:
        url, drop = f"sqlite:///{tempfile.mkdtemp(prefix='ticker-private-')}/ticker.db", (lambda: None)
    command.upgrade(alembic_config(url), "head")
    reset_engine()
    config.configure(before, database_url=url)
    try:
        yield url
    finally:
        reset_engine()
        config.configure(before)
        drop()
        reset_engine()
