"""/docs loads nothing from another origin: Swagger UI's files come from the pinned
swagger-ui-bundle package through this service, the page has no inline script, and its
Content-Security-Policy allows scripts, styles and calls from this origin only (the dashboard
keeps the API key in localStorage on the same origin)."""
from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest

from app.web import api_docs


def test_the_page_is_public_under_a_policy_of_this_origin_only(client):
    response = client.get("/docs")  # no API key: the page holds no data
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_every_file_the_page_loads_is_served_from_this_origin(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "http://" not in page and "https://" not in page and "//" not in re.sub(r"<!--.*?-->", "", page)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all('src="' in attributes and not body.strip() for attributes, body in scripts)  # none inline
    urls = re.findall(r'(?:src|href|data-spec-url)="([^"]+)"', page)
    assert len(urls) >= 5
    for url in urls:
        resolved = urljoin("http://localhost/docs", url)
        assert urlsplit(resolved).netloc == "localhost", url
        response = client.get(urlsplit(resolved).path)
        assert response.status_code == 200, resolved
        kind = {"js": "javascript", "css": "css", "png": "image/png", "json": "json"}[resolved.rsplit(".", 1)[1]]
        assert kind in response.mimetype, (resolved, response.mimetype)
    init_script = client.get("/docs/assets/docs.js").get_data(as_text=True)
    assert "http://" not in init_script and "https://" not in init_script
    assert "validatorUrl: null" in init_script  # Swagger UI would send the document's URL to its validator


@pytest.mark.parametrize("path", ["/docs/assets/index.html", "/docs/assets/swagger-initializer.js",
                                  "/docs/assets/..%2Fapi_docs.py", "/docs/assets/docs_page"])
def test_nothing_else_is_served(client, path):
    assert client.get(path).status_code == 404


def test_the_assets_are_the_pinned_package(client):
    assert api_docs.SWAGGER_UI_DIR.is_dir()
    served = client.get("/docs/assets/swagger-ui-bundle.js").get_data()
    assert served == (api_docs.SWAGGER_UI_DIR / "swagger-ui-bundle.js").read_bytes()
