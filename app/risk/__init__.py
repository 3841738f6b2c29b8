"""Risk controls: the kill switch, the halted state and each account's risk limits."""
