"""Search in the console (headless Chromium): the hub's full-text search from the Search
view, a result opening the conversation read-only with its audit events in the timeline, a
query the hub refuses showing its reason; axe-core and no sideways scrolling at 1366 and
360 px, in English and German."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import running_hub
from tests.test_console_browser import (  # noqa: F401  (browser: a fixture)
    PHONE,
    WIDE,
    browser,
    check_axe,
    console,
    email,
    load_customers,
    log_in,
    no_sideways_scroll,
    settings,
    shoot,
    shots_dir,
)

pytestmark = pytest.mark.integration


async def test_search_opens_a_conversation_read_only(
    browser: Any,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    from playwright.async_api import expect

    directory = shots_dir(tmp_path)
    async with running_hub(settings(sqlite_url, tmp_path)) as hub:
        await load_customers(hub)
        await email(hub, "anna@example.com", "Die Rechnung R-2211 ist doppelt.", "<s1@example.com>")
        for label, viewport in (("1366", WIDE), ("360", PHONE)):
            for lang, locale in (("en", "en-GB"), ("de", "de-DE")):
                name = f"{label}-{lang}"
                async with console(browser, hub, "alice", viewport=viewport, locale=locale) as page:
                    await log_in(page, hub, "alice")
                    await page.keyboard.press("5")  # the Search view, focus in the box
                    await expect(page.locator("#search")).to_be_focused()
                    await page.keyboard.type('"*')  # no words: the hub says why
                    await page.keyboard.press("Enter")
                    await expect(page.locator(".search-status")).to_contain_text(
                        "no letters or digits"
                    )
                    await page.fill("#search", "rech R-2211")
                    await page.keyboard.press("Enter")
                    hits = page.locator("#search-results li")
                    await expect(hits).to_have_count(1)
                    await expect(hits.first).to_contain_text("Anna Top")
                    await expect(hits.first).to_contain_text("R-2211")
                    await shoot(page, directory, f"search-{name}")
                    await check_axe(page, f"search {name}")
                    await no_sideways_scroll(page, f"search {name}")
                    await hits.first.locator("button").click()
                    # offered to alice, not held: read-only, with the rule decision shown
                    await expect(page.locator(".read-only")).to_be_visible()
                    await expect(page.locator("#reply-text")).to_have_count(0)
                    routed = page.locator('#messages li.audit[data-kind="conversation.created"]')
                    await expect(routed).to_contain_text("premium")
                    await expect(routed).to_contain_text("vip-desk")
                    await expect(page.locator("#messages li.inbound")).to_contain_text("R-2211")
                    await shoot(page, directory, f"search-open-{name}")
                    await check_axe(page, f"search open {name}")
                    await no_sideways_scroll(page, f"search open {name}")


async def test_claim_confirmation_and_customer_notes(
    browser: Any,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    import time

    from playwright.async_api import expect

    from hub.envelope import Direction, Envelope, Identity
    from hub.keys import PIPELINE

    directory = shots_dir(tmp_path)
    async with running_hub(settings(sqlite_url, tmp_path)) as hub:
        await load_customers(hub)
        async with console(browser, hub, "bob") as page:
            await log_in(page, hub, "bob")
            await hub.app[PIPELINE].ingest(  # from Anna's address, without proof
                Envelope(
                    channel="email",
                    inbox="support",
                    direction=Direction.INBOUND,
                    idempotency_key="<forged@example.com>",
                    received_at=time.time(),
                    sender_verified=False,
                    sender=Identity(kind="email", address="anna@example.com"),
                    text="Neue Bankverbindung",
                )
            )
            await page.locator("#offers li.offer button.accept").click()
            claim = page.locator("#claims li")
            await expect(claim).to_contain_text("anna@example.com")
            await expect(claim).to_contain_text("not verified")
            await check_axe(page, "claim open")
            await claim.get_by_role("button", name="Confirm").click()
            await expect(claim).to_contain_text("confirmed by bob")
            await expect(claim.get_by_role("button")).to_have_count(0)
            audit = page.locator('#messages li.audit[data-kind="identity.claim_confirmed"]')
            await expect(audit).to_contain_text("You confirmed: anna@example.com")
            await page.fill("#customer-note-text", "Ruft <b>oft</b> an")
            await page.get_by_role("button", name="Save note").click()
            await expect(page.locator("#customer-notes li")).to_contain_text("Ruft <b>oft</b> an")
            await expect(page.locator("#customer-note-text")).to_have_value("")
            await shoot(page, directory, "claim-notes-1366-en")
            await check_axe(page, "claim judged, note kept")


async def test_inbox_views_with_filters(
    browser: Any,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    from playwright.async_api import expect

    directory = shots_dir(tmp_path)
    async with running_hub(settings(sqlite_url, tmp_path)) as hub:
        await load_customers(hub)
        await email(hub, "anna@example.com", "Wo bleibt die Gutschrift?", "<i1@example.com>")
        for label, viewport in (("1366", WIDE), ("360", PHONE)):
            async with console(browser, hub, "alice", viewport=viewport) as page:
                await log_in(page, hub, "alice")
                await page.keyboard.press("6")
                rows = page.locator("#inbox-list li")
                await expect(rows).to_have_count(1)  # waiting in a queue alice serves
                await expect(rows.first).to_contain_text("Anna Top")
                await expect(rows.first).to_contain_text("vip")
                await page.select_option("select[aria-label='Tier']", "C")
                await expect(page.locator(".inbox .empty")).to_be_visible()
                await page.select_option("select[aria-label='Tier']", "A")
                await expect(rows).to_have_count(1)
                await page.click("#inbox-closed")
                await expect(page.locator(".inbox .empty")).to_be_visible()
                await page.click("#inbox-all")
                await expect(rows).to_have_count(1)
                await shoot(page, directory, f"inbox-{label}-en")
                await check_axe(page, f"inbox {label}")
                await no_sideways_scroll(page, f"inbox {label}")
                await rows.first.locator("button").click()
                await expect(page.locator(".read-only")).to_be_visible()
                await expect(page.locator("#messages li.inbound")).to_contain_text("Gutschrift")


async def test_board_shows_the_days_figures(
    browser: Any,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    from playwright.async_api import expect

    directory = shots_dir(tmp_path)
    async with running_hub(settings(sqlite_url, tmp_path, wrap_up="0s")) as hub:
        await load_customers(hub)
        async with console(browser, hub, "alice") as page:
            await log_in(page, hub, "alice")
            await email(hub, "anna@example.com", "Frage zur Rechnung", "<d1@example.com>")
            await page.locator("#offers li.offer button.accept").click()
            await page.fill("#reply-text", "Erledigt.")
            await page.keyboard.press("Enter")
            await expect(page.locator("#messages li.outbound")).to_have_count(1)
            await page.click("#close-conversation")
            await expect(page.locator(".read-only")).to_be_visible()
            await page.click("#view-board")
            premium = page.locator("#day-queues tr[data-row='premium']")
            await expect(premium.locator("td").first).to_have_text("1")  # conversations
            alice = page.locator("#day-agents tr[data-row='alice']")
            await expect(alice.locator("td").nth(6)).to_have_text("1")  # closed
            await shoot(page, directory, "board-day-1366-en")
            await check_axe(page, "board with the day's figures")
