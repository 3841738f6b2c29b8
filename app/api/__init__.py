"""REST blueprints (flask-smorest: the OpenAPI document is generated from them)."""


def blueprints():
    from app.api.accounts import blp as accounts
    from app.api.health import blp as health
    from app.api.instruments import blp as instruments

    return [health, accounts, instruments]
