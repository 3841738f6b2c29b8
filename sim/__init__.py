"""Paper broker: a local Kite Connect v3 (REST + ticker WebSocket) for tests and paper trading.

Run `python -m sim --port N`; from tests use `sim.harness.PaperBroker`. See sim/README.md.
"""
