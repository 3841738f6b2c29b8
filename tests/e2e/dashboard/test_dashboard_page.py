"""The dashboard page is served publicly, as static files, without a build step."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[3] / "app" / "static" / "dashboard"


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_page_is_public_html_with_a_strict_policy(client, path):
    response = client.get(path)  # no API key: the page itself holds no data
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert '<script type="module" src="/static/dashboard/main.js">' in body
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self' ws: wss:" in policy
    assert response.headers["Cache-Control"] == "no-cache"


def test_every_module_and_stylesheet_the_page_uses_is_served(client):
    """Walk the imports from index.html: nothing missing, nothing from a CDN."""
    seen, queue = set(), ["/static/dashboard/main.js", "/static/dashboard/dashboard.css"]
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        assert response.status_code == 200, path
        text = response.get_data(as_text=True)
        if path.endswith(".js"):
            assert "javascript" in response.mimetype, (path, response.mimetype)
            for module in re.findall(r'from\s+"(\./[\w.-]+\.js)"', text):
                queue.append("/static/dashboard/" + module[2:])
    assert {p.name for p in STATIC.glob("*.js")} == {p.rsplit("/", 1)[1] for p in seen if p.endswith(".js")}
    for path in STATIC.iterdir():
        assert "http://" not in path.read_text() and "https://" not in path.read_text(), f"external URL in {path.name}"


def test_api_still_needs_a_key(client):
    assert client.get("/accounts").status_code == 401
