"""REST blueprints (flask-smorest: the OpenAPI document is generated from them)."""


def blueprints():
    from app.web.api.accounts import blp as accounts
    from app.web.api.batches import blp as batches
    from app.web.api.dashboard import blp as dashboard
    from app.web.api.health import blp as health
    from app.web.api.instruments import blp as instruments
    from app.web.api.kill_switch import blp as kill_switch
    from app.web.api.kite_login import blp as kite_login
    from app.web.api.market import blp as market
    from app.web.api.orders import blp as orders
    from app.web.api.postback import blp as postback
    from app.web.api.realtime import blp as ws_status
    from app.web.api.risk_limits import blp as risk_limits
    from app.web.api.subscriptions import blp as subscriptions
    from app.web.api.webhooks import blp as webhooks
    from app.realtime.routes import blp as websockets

    return [health, accounts, kite_login, batches, instruments, market, subscriptions, ws_status, websockets, webhooks, orders, postback, dashboard,
            risk_limits, kill_switch]
