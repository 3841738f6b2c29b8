"""REST blueprints (flask-smorest: the OpenAPI document is generated from them)."""


def blueprints():
    from app.api.accounts import blp as accounts
    from app.api.batches import blp as batches
    from app.api.dashboard import blp as dashboard
    from app.api.health import blp as health
    from app.api.instruments import blp as instruments
    from app.api.market import blp as market
    from app.api.orders import blp as orders
    from app.api.postback import blp as postback
    from app.api.realtime import blp as ws_status
    from app.api.subscriptions import blp as subscriptions
    from app.api.webhooks import blp as webhooks
    from app.realtime.routes import blp as websockets

    return [health, accounts, batches, instruments, market, subscriptions, ws_status, websockets, webhooks, orders, postback, dashboard]
