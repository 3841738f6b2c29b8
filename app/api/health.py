from flask_smorest import Blueprint

from app import health as health_checks

blp = Blueprint("health", __name__, description="Service health")


@blp.route("/health")
@blp.doc(security=[])
def health():
    """Health: `ok`, `degraded` (200) or 503 when the database or Redis is down."""
    body, status = health_checks.report()
    return body, status
