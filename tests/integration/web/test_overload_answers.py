"""A web process whose database connections are all busy answers 503 with Retry-After, not 500."""
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tests.support.environment import API_KEYS


def test_no_free_database_connection_is_a_503_with_retry_after(db_schema):
    from app import create_app

    app = create_app()
    app.config["TESTING"] = True

    @app.route("/_test/pool-exhausted")
    def exhausted():
        raise PoolTimeout("QueuePool limit of size 10 overflow 20 reached, connection timed out, timeout 30.00")

    response = app.test_client().get("/_test/pool-exhausted", headers={"X-API-Key": API_KEYS["admin"]})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["error"]["code"] == "server_busy" and "QueuePool" not in response.get_data(as_text=True)
