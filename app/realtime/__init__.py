"""Real-time relay: one Redis pub/sub subscription per web process, fanned out to WebSockets.

Endpoints (flask-sock, see routes.py; auth by one of the `X-API-Key` header, `?api_key=`,
`Authorization: Bearer` or `?access_token=` — tokens when JWT_JWKS_URL is set: app/web/auth.py):

``/ws/orders/<account_id>`` (alias ``/advanced/ws/orders/<account_id>``)
    A key without the account gets HTTP 403 (JSON error shape) before the socket opens.
``/ws/orders``
    Admin keys only: every account.
``/ws/ticks?underlying=nifty,banknifty&chain=NIFTY:2026-12-03&tokens=256265,123``
    Tick batches of the stream process (see workers/stream/batcher.py).

Messages to an order client, in this order:

1. ``{"type": "snapshot", "account_id": "primary", "orders": [order record, ...],
   "seq": 41, "timestamp": "...Z"}`` — the account's non-final orders and the
   account's current sequence number. On ``/ws/orders`` (admin) ``account_id`` is
   ``"*"`` and ``seq`` is ``{"account_id": seq, ...}``.
2. ``{"type": "order_update", "account_id", "seq", "data": order record, "timestamp"}``
   exactly as app/orders/updates.py publishes it. ``seq`` rises by one per update of
   the account; updates already reflected in the snapshot (seq <= snapshot seq) are
   not repeated. A jump in ``seq`` means updates were missed: fetch
   ``GET /accounts/{id}/orders`` (or reconnect for a fresh snapshot).
3. ``{"type": "resync", "reason": ..., "timestamp"}`` after the relay lost Redis for
   a while (updates may have been missed).
4. ``{"type": "session", "account_id", "seq", "data": {"account_id", "state", "expires_at",
   "expired_at", "reason", "login_url", ...}, "timestamp"}`` when the account's Kite session
   expires or a login starts a new one (app.kite_session.announce); numbered with the updates.
5. ``{"type": "kill_switch", "account_id", "seq", "data": the operation (id, status, steps, ...),
   "timestamp"}`` at each step of a kill switch on the account, and ``{"type": "halt", ..., "data":
   {"account_id", "halted": null, "resumed_by", "was"}}`` when the account resumes (app.risk.kill_switch);
   numbered with the updates.

Any client may send the text ``ping`` and gets ``pong``. The server also sends
WebSocket pings (``SOCK_SERVER_OPTIONS.ping_interval``) and closes a client that
does not answer (code 1008). An order client that falls more than
``WS_ORDER_QUEUE_MAX`` updates behind is closed with code 1013 ("try again later")
and a reason; other clients are not slowed. Replies (``pong``, subscription answers,
errors) wait in the same outbox: a client that leaves more than 100 of them (or 1 MiB)
unread is closed with 1013 and a reason, or dropped when nothing can be sent to it any
more. A socket opened with a bearer token is closed with code 4401 when the token
expires (``exp`` plus ``JWT_LEEWAY_S``): reconnect with a fresh token.

Limits (issue #21), each per web process (gunicorn worker):

- ``WS_MAX_CLIENTS_PER_KEY`` (20) sockets per key (an API key, or a token's subject, with
  the accounts it grants; admin keys have no per-key cap) and ``WS_MAX_CLIENTS`` (90 % of
  ``WEB_WORKER_CONNECTIONS``) in all. A socket past a cap is accepted and closed at once,
  before any message: code 1008 with the reason ``too many WebSockets: at most 20 per key
  ...`` (close another first), or 1013 with ``server busy: at most N WebSockets per process
  ...`` (retry later, with backoff).
- A client message (text or binary, after decompression) longer than
  ``WS_MAX_MESSAGE_BYTES`` (128 KiB) closes the socket with code 1009 ("Message is too big").
- A tick socket holds at most 5,000 tokens, 50 underlyings and 25 chains, however many
  messages built its subscription.

A tick client receives the stream's messages unchanged when it watches the channel's
underlying (every option chain and the spot/futures), or the message's chain (``chain``:
``UNDERLYING:YYYY-MM-DD``, an option chain: its option messages, one per batch, and the
underlying's ``ticker:{u}:underlying`` messages, for the spot and the futures — nothing
else), or else with ``ticks`` (and ``count``) narrowed to its tokens. It may change its
subscription with a JSON text message::

    {"action": "subscribe", "tokens": [256265], "underlying": ["nifty"], "chains": ["NIFTY:2026-12-03"]}
    {"action": "unsubscribe", "tokens": [256265]}

answered by ``{"type": "subscribed", "action": "subscribe", "tokens": [...], "underlying": [...],
"chains": [...], "total": {"tokens": 3, "underlying": 1, "chains": 1}}``: ``action``, ``tokens``,
``underlying`` and ``chains`` are the message's (the socket's first message names its whole
subscription, from the query string), and ``total`` counts the socket's subscription after it:
an answer is never much longer than its message. A bad query value is HTTP 422 before the socket opens.
Bad input, or a subscribe past the caps (which then changes nothing): ``{"type": "error",
"message": ...}``. A slow tick client keeps the newest ``WS_TICK_BUFFER_MAX`` batches, drops
the oldest, and is told ``{"type": "dropped", "count": n, "total": m}`` before its next batch.
"""
