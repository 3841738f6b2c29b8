"""The API documentation page, /docs: Swagger UI on /openapi.json, every file from this origin.

The page shares its origin with the dashboard, which keeps the API key in localStorage, so no
script may come from elsewhere: Swagger UI's files are served from the pinned swagger-ui-bundle
package, the page's own script is a file beside it (docs_page/), and a Content-Security-Policy
allows nothing else — no inline script, no other origin.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from app.web.html_pages import html_page

blp = Blueprint("api_docs", __name__)

PAGE_DIR = Path(__file__).resolve().parent / "docs_page"
SWAGGER_UI_DIR = Path(str(swagger_ui_path))
# What the page loads, and from where; nothing else of either folder is served.
ASSETS = {"swagger-ui.css": SWAGGER_UI_DIR, "swagger-ui-bundle.js": SWAGGER_UI_DIR,
          "favicon-32x32.png": SWAGGER_UI_DIR, "favicon-16x16.png": SWAGGER_UI_DIR, "docs.js": PAGE_DIR}

# Swagger UI styles its elements from script (allowed); its icons are data: images; "Try it out"
# calls this origin only.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@blp.route("/docs")
def page():
    return html_page(PAGE_DIR, "index.html", CONTENT_SECURITY_POLICY)


@blp.route("/docs/assets/<name>")
def asset(name: str):
    if name not in ASSETS:
        abort(404)
    response = send_from_directory(ASSETS[name], name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
