"""The admins' rules replay page in headless Chromium: a broken file shows its problems by line
and column (and a click puts the caret there), an uploaded file replays into the summary with
its queue move and examples, a non-admin is told the page is not for them; axe-core on each.
A screenshot goes to ``$CHANNELHUB_SCREENSHOTS`` (or the test's temporary directory)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _HASH, make_settings
from tests.helpers import running_hub
from tests.test_console_browser import browser, check_axe, console, log_in, shots_dir
from tests.test_rules_diff import DAY, OLD, TIERED, _history

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, imported for the tests below


def _settings(url: str, tmp_path: Path) -> Any:
    (tmp_path / "rules.yaml").write_text(OLD)
    return make_settings(
        url,
        tmp_path,
        rules={"path": str(tmp_path / "rules.yaml")},
        queues=[{"name": "general"}, {"name": "premium"}, {"name": "billing"}],
        agents=[
            {"id": "ada", "name": "Ada Admin", "password_hash": _HASH, "role": "admin"},
            {"id": "bob", "name": "Bob Builder", "password_hash": _HASH},
        ],
    )


async def test_an_admin_replays_a_rules_change(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    clock = [datetime.now(UTC).timestamp() - DAY]
    async with running_hub(_settings(sqlite_url, tmp_path)) as hub:
        _first, second, _third = await _history(hub.store, clock)
        async with console(browser, hub, "ada") as page:
            await log_in(page, hub, "ada")
            await page.goto(f"{hub.url}/console/rules-diff")
            await expect(page.locator("#diff-form")).to_be_visible()
            await check_axe(page, "rules diff form")
            broken = TIERED.replace('customer.tier == "A"', "customer.tierr")
            await page.fill("#rules-text", broken)
            await page.click("#replay")
            problems = page.locator("#problems li")
            await expect(problems).to_have_count(1)
            await expect(problems.first).to_contain_text("line 5, column 11")
            await expect(problems.first).to_contain_text("tierr")
            await problems.first.locator("button").click()
            caret = await page.evaluate(
                "() => { const a = document.getElementById('rules-text');"
                " return a.value.slice(0, a.selectionStart).split('\\n').length; }"
            )
            assert caret == 5
            await check_axe(page, "rules diff problems")
            upload = tmp_path / "proposed.yaml"
            upload.write_text(TIERED)
            await page.set_input_files("#rules-file", str(upload))
            await expect(page.locator("#rules-text")).to_have_value(TIERED)
            await page.select_option("#since", "30d")
            await page.click("#replay")
            heading = page.locator("#summary-heading")
            await expect(heading).to_have_text("1 of 3 messages would be handled differently")
            await expect(page.locator("#summary")).to_contain_text("1 messages were stored before")
            moved = page.locator("#queues tr.moved")
            await expect(moved).to_have_count(1)
            await expect(moved).to_contain_text("premium")
            await expect(page.locator(f"#example-{second}")).to_contain_text("queue premium")
            await expect(page.locator("#problems")).to_have_count(0)
            await check_axe(page, "rules diff summary")
            await page.screenshot(
                path=str(shots_dir(tmp_path) / "rules-diff-1366.png"), full_page=True
            )
        async with console(browser, hub, "bob") as page:
            await log_in(page, hub, "bob")
            await page.goto(f"{hub.url}/console/rules-diff")
            await expect(page.locator("#access")).to_have_text(
                "Only admins may replay rules changes."
            )
            await expect(page.locator("#diff-form")).to_have_count(0)
        async with console(browser, hub, "nobody", axe=False) as page:
            await page.goto(f"{hub.url}/console/rules-diff")
            await expect(page.locator("#access")).to_contain_text("Log in to the console")
