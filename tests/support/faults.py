"""Broker faults between tests: what the `clean_faults` fixture (tests/integration/conftest.py) does.

The paper broker's faults (rejections, errors, latency, dropped sockets) and market controls
are broker-wide, and the service's circuit breakers are per account in Redis: a test that
sets any of them must not leave them to the next one. Which of them a test can touch depends
on the paper broker it uses, named by the fixture that provides it (`broker_fixture_of`).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cleanup:
    clear_before: bool  # no faults when the test starts (faults are always cleared after it)
    reset_breakers: bool  # the service's circuit breakers closed when the test starts
    thaw_after: bool  # the market moving again after the test (the sim tests freeze and move it)


# The fixtures that stand for a paper broker, and what is reset around a test that uses them.
BROKER_FIXTURES = {
    "order_stack": Cleanup(clear_before=True, reset_breakers=True, thaw_after=False),  # the service's orders
    "batch_stack": Cleanup(clear_before=True, reset_breakers=False, thaw_after=False),  # the service's batches
    "broker": Cleanup(clear_before=False, reset_breakers=False, thaw_after=True),  # a broker of the test's own
}


def broker_fixture_of(fixturenames) -> str | None:
    """The name of the paper-broker fixture a test uses, if any."""
    return next((name for name in BROKER_FIXTURES if name in fixturenames), None)


def reset_circuit_breakers(account_ids) -> None:
    from app.broker.circuit_breaker import order_circuit_breaker

    for account_id in account_ids:
        order_circuit_breaker().reset(account_id)


def before_test(broker, cleanup: Cleanup, service_accounts=()) -> None:
    if cleanup.clear_before:
        broker.clear_faults()
    if cleanup.reset_breakers:
        reset_circuit_breakers(service_accounts)


def after_test(broker, cleanup: Cleanup) -> None:
    broker.clear_faults()
    if cleanup.thaw_after:
        broker.set_market(frozen=False)  # (it also matches resting orders: only where tests freeze it)
