"""/docs in Debian's Chromium (never `playwright install`): Swagger UI renders every operation
of the live OpenAPI document, with its script and styles served by the API itself, so the page
works on a machine without internet; no request leaves 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.browser.test_dashboard_page import CHROMIUM, CHROMIUM_ARGS
from tests.support.processes import Platform

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (make chromium)"
    ),
]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("docs"), "--no-sim")
    try:
        running.wait_up()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


async def test_docs_page_shows_every_operation_without_leaving_loopback(
    browser: Browser, platform: Platform, tmp_path: Path
) -> None:
    async with httpx.AsyncClient() as http:
        document = (await http.get(f"{platform.api}/openapi.json", timeout=10)).json()
    operations = sum(len(item) for item in document["paths"].values())
    assert operations >= 16
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    urls: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(f"{platform.api}/docs")
        blocks = page.locator(".opblock")
        await expect(blocks).to_have_count(operations, timeout=20_000)
        await expect(page.locator(".opblock-summary-path", has_text="/v1/rides")).not_to_have_count(
            0
        )
        # no "Unable to render this definition" / resolver errors
        await expect(page.locator(".errors-wrapper")).to_have_count(0)
        await page.screenshot(path=str(tmp_path / "docs.png"))
    finally:
        await context.close()
    local = re.compile(rf"^https?://127\.0\.0\.1:{platform.api_port}/")
    leaving = [u for u in urls if not local.match(u) and not u.startswith(("data:", "blob:"))]
    assert not leaving, f"requests outside loopback: {leaving}"
    assert any(u.endswith("/docs-assets/swagger-ui-bundle.js") for u in urls), urls
    assert not errors, f"the page threw: {errors}"
