"""Order execution: validation, the persisted state machine, exactly-once placement, broker sync.

    schemas    validate_order(payload) -> dict  (single orders and batch legs)
    states     statuses, allowed transitions, transition() with its OrderEvent
    service    accept / read / list / modify / cancel / replay (web side)
    execution  submit_order(order_id, max_attempts) — the exactly-once path the workers run
    sync       apply_broker_update(account_id, order_dict) — postbacks, WebSocket, reconciliation
"""
