"""Unit tests: no services — no database, no Redis, no broker, no worker. They run in seconds
(`make test-unit`), with PostgreSQL and Redis unreachable too.

What the code under test would look up in a service comes from here instead.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def instrument_registry(monkeypatch):
    """The process's instrument registry, for this test: the instruments of
    tests/support/instruments.py in memory, loaded now (so never stale: an unknown symbol is
    refused without a refresh)."""
    from app.market import instruments
    from tests.support.instruments import SAMPLE

    fixed = instruments.InstrumentRegistry.of(SAMPLE)
    monkeypatch.setattr(instruments, "_registry", fixed)
    return fixed
