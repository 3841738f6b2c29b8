"""The trader dashboard: one static page (option chain, order blotter, strategy builder).

The page and its ES modules live in app/static/dashboard/ and need no build step.
The HTML is public (it holds no data); every call it makes carries the trader's
API key (`X-API-Key` header for REST, `?api_key=` for WebSockets, which browsers
cannot give headers). Assets are served by Flask's own `static` endpoint.
"""
from __future__ import annotations

from pathlib import Path

from app.web.blueprint import Blueprint
from app.web.html_pages import html_page

blp = Blueprint("dashboard", __name__, description="Trader dashboard (HTML page)")

PAGE_DIR = Path(__file__).resolve().parents[2] / "static" / "dashboard"

# Only our own scripts, styles and sockets: a key in localStorage must not be
# readable by injected or third-party script.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

# The page is HTML, not JSON: documented by hand (flask-smorest's @response is for schemas).
HTML_PAGE = {"200": {"description": "the dashboard page (no data in it)",
                     "content": {"text/html": {"schema": {"type": "string"}}}}}


def _page():
    return html_page(PAGE_DIR, "index.html", CONTENT_SECURITY_POLICY)


@blp.route("/")
@blp.doc(security=[], responses=HTML_PAGE)
def index():
    """The trader dashboard (text/html)."""
    return _page()


@blp.route("/dashboard")
@blp.doc(security=[], responses=HTML_PAGE)
def dashboard_page():
    """The trader dashboard (text/html), same page as `/`."""
    return _page()
