"""/health: ok with its checks, 503 when Redis is down, back when it returns."""
from launcher.embedded_redis import EmbeddedRedis


def test_health_reports_checks_and_counts(client):
    response = client.get("/health")
    body = response.json
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert set(body["tasks"]) >= {"pending", "completed", "dead_letter"}
    assert set(body["queues"]) == {"orders", "batches", "webhooks", "maintenance"}
    assert body["status"] in ("ok", "degraded") and response.status_code == 200


def test_health_is_503_while_redis_is_down(client, settings_override):
    server = EmbeddedRedis().start()
    settings_override(redis_url=server.url)
    assert client.get("/health").json["checks"]["redis"]["status"] == "ok"
    port = server.port
    server.stop()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["checks"]["redis"]["status"] == "down"
    restarted = EmbeddedRedis(port=port).start()
    try:
        assert client.get("/health").json["checks"]["redis"]["status"] == "ok"
    finally:
        restarted.stop()


def test_health_degraded_when_broker_unreachable(client, settings_override):
    settings_override(kite_api_root="http://127.0.0.1:9")  # discard port: nothing listens
    body = client.get("/health").json
    assert body["checks"]["broker"]["status"] == "down"
    assert body["status"] == "degraded"


def test_health_checks_each_accounts_broker_session(client, accounts, paper_broker):
    from app.core.redis_client import get_redis

    get_redis().delete(*[f"health:broker:{a}" for a in accounts])
    body = client.get("/health").json
    assert body["checks"]["broker"]["status"] == "ok", body
    assert {"primary", "other"} <= set(body["checks"]["broker"]["accounts"])
    assert body["checks"]["broker"]["accounts"]["primary"]["status"] == "ok"
