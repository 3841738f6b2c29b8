"""The stream process: Kite WebSocket pool, tick decode, Greeks, batched publish to Redis."""
