"""/health: ok with its checks, 503 when Redis is down, back when it returns; accounts named only to their keys."""
import json

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


def test_health_checks_each_accounts_broker_session(client, headers, accounts, paper_broker):
    from app.core.redis_client import get_redis

    get_redis().delete(*[f"health:broker:{a}" for a in accounts])
    body = client.get("/health", headers=headers["admin"]).json
    down = {a: c for a, c in body["checks"]["broker"].get("accounts", {}).items() if c.get("status") != "ok"}
    assert body["checks"]["broker"]["status"] == "ok", down or body
    assert {"primary", "other"} <= set(body["checks"]["broker"]["accounts"])
    assert body["checks"]["broker"]["accounts"]["primary"]["status"] == "ok"


def test_health_names_accounts_only_to_their_keys(client, headers, accounts, paper_broker):
    """Issue #21: the open /health named every account (broker checks, refusals, egress)."""
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.core.redis_client import get_redis
    from app.models import Account

    with session_scope() as session:
        account_ids = set(session.scalars(select(Account.id)))
    redis = get_redis()
    redis.delete(*[f"health:broker:{a}" for a in account_ids])
    # The broker refuses `other` (its cached check says so): the service is degraded for everyone.
    redis.set("health:broker:other", json.dumps({"status": "down", "error": "TokenException: other's token"}), ex=30)
    try:
        open_body = client.get("/health").get_data(as_text=True)
        as_primary = client.get("/health", headers=headers["primary"]).json
        as_admin = client.get("/health", headers=headers["admin"]).json
    finally:
        redis.delete("health:broker:other")

    opened = json.loads(open_body)
    assert opened["status"] == as_primary["status"] == as_admin["status"] == "degraded"
    assert opened["checks"]["broker"]["status"] == "down"
    assert opened["checks"]["broker"]["error"].startswith("broker refuses ")
    assert "accounts" not in opened["checks"]["broker"] and "egress" not in opened and "sessions" not in opened
    # The body's own vocabulary (queue, check and task names) may equal an account id another test made.
    # So may its status words ("ok", "down", ...): the fuzzer makes accounts of any name.
    vocabulary = set(opened.get("queues", {})) | set(opened["checks"]) | set(opened.get("tasks", {}))
    vocabulary |= {key for c in opened["checks"].values() if isinstance(c, dict) for key in c}  # "processes"…
    vocabulary |= {opened["status"]} | {c.get("status") for c in opened["checks"].values() if isinstance(c, dict)}
    assert not [a for a in account_ids - vocabulary if f"'{a}'" in open_body or f'"{a}"' in open_body]

    broker = as_primary["checks"]["broker"]
    assert set(broker["accounts"]) == set(as_primary["egress"]) == set(as_primary["sessions"]) == {"primary"}
    assert "other" not in json.dumps(broker["accounts"]) and "other's token" not in broker["error"]
    assert "other" in as_admin["checks"]["broker"]["error"] and "other's token" in as_admin["checks"]["broker"]["error"]
    assert {"primary", "other"} <= set(as_admin["egress"]) & set(as_admin["checks"]["broker"]["accounts"])

