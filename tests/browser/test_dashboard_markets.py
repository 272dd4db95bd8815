"""The market switch in Debian's Chromium when the deployment runs one market: it stays hidden
(the switch between two markets is tested in test_dashboard_page.py)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.test_dashboard_page import (  # noqa: F401 (fixtures)
    CHROMIUM,
    DashboardProcess,
    browser,
    dashboard,
    page,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium"),
]


async def test_the_market_switch_is_hidden_when_the_deployment_runs_one_market(
    page: Page,  # noqa: F811
    dashboard: DashboardProcess,  # noqa: F811
) -> None:
    await page.goto(f"{dashboard.url}/?token={dashboard.token}")
    await expect(page.locator("#conn-badge")).to_contain_text("live", timeout=10_000)
    await expect(page.locator("#market-name")).to_have_text("San Francisco")
    await expect(page.locator("#market-select option")).to_have_count(1, timeout=10_000)
    await expect(page.locator("#market-switch")).to_be_hidden()
