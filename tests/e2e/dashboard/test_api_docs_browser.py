"""/docs in headless Chromium (the dashboard's browser fixtures): Swagger UI renders every
operation under the page's Content-Security-Policy — no violation, no script error — fetching
nothing from another origin, and "Try it out" calls this service."""
from __future__ import annotations

from urllib.parse import urlsplit


def test_swagger_ui_works_under_its_policy_from_this_origin_only(page, live_server):
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{live_server.url}/docs")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() >= 20
    page.locator(".opblock-summary", has_text="/health").first.click()
    page.locator("button.try-out__btn").first.click()
    page.locator("button.execute").first.click()
    status = page.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() in ("200", "503")
    assert not page.js_errors, page.js_errors  # a policy violation is a console error
    origins = {urlsplit(url).netloc for url in requests if not url.startswith("data:")}
    assert origins == {urlsplit(live_server.url).netloc}, sorted(requests)
