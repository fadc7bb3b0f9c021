"""The console and the chat widget in headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pypdf
import pytest

from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import IN_CI, running_hub

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("chromium is not installed (CI=true requires it; see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def test_console_round_trip_in_chromium(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    async with running_hub(make_settings(sqlite_url, tmp_path)) as hub:
        agent_context = await browser.new_context()
        customer_context = await browser.new_context()
        agent = await agent_context.new_page()
        customer = await customer_context.new_page()
        errors: list[str] = []
        for page in (agent, customer):
            page.on("pageerror", lambda error: errors.append(str(error)))

        await agent.goto(f"{hub.url}/console/")
        await agent.fill("#username", "alice")
        await agent.fill("#password", AGENT_PASSWORD)
        await agent.click("#login-button")
        await expect(agent.locator("#connection")).to_have_text("online")
        await expect(agent.locator("#agent-name")).to_have_text("Alice")

        await customer.goto(f"{hub.url}/chat/")
        await customer.fill(
            "#channelhub-chat .chh-input", "<img src=x onerror=alert(1)> my parcel?"
        )
        await customer.click("#channelhub-chat .chh-send")
        await expect(customer.locator(".chh-you")).to_have_text(
            "<img src=x onerror=alert(1)> my parcel?"
        )
        await expect(customer.locator(".chh-you.chh-pending")).to_have_count(0)

        offer = agent.locator("#offers li.offer")
        await expect(offer).to_contain_text("my parcel?")
        await offer.locator("button.accept").click()
        await expect(agent.locator("#messages li.inbound")).to_contain_text("my parcel?")
        # the payload stayed text in both pages
        assert await agent.locator("#messages img").count() == 0
        assert await customer.locator("#channelhub-chat img").count() == 0

        await agent.fill("#reply-text", "It left the warehouse today.")
        await agent.click("#reply-send")
        await expect(customer.locator(".chh-agent")).to_have_text("It left the warehouse today.")
        await expect(agent.locator("#messages li.outbound .meta")).to_contain_text("delivered")

        await customer.reload()
        await expect(customer.locator(".chh-msg.chh-you, .chh-msg.chh-agent")).to_have_count(2)
        await expect(customer.locator(".chh-agent")).to_have_text("It left the warehouse today.")

        await agent.reload()
        await expect(agent.locator("#connection")).to_have_text("online")
        await expect(agent.locator("#conversations li")).to_have_count(1)
        # the two messages (the timeline also lists the audit events between them)
        await expect(agent.locator("#messages li:not(.event)")).to_have_count(2)

        await agent.select_option("#disposition", "resolved")
        await agent.click("#close-conversation")
        await expect(agent.locator("#conversations li")).to_have_count(0)
        assert errors == []
        await agent_context.close()
        await customer_context.close()


async def test_console_shows_the_customer_context(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    import time

    from playwright.async_api import expect

    from hub.customers import csvimport
    from hub.envelope import Direction, Envelope, Identity
    from hub.keys import CUSTOMERS, PIPELINE
    from tests.test_customers import CUSTOMERS_CSV, INVOICES_CSV, ORDERS_CSV

    async with running_hub(make_settings(sqlite_url, tmp_path)) as hub:
        customers = hub.app[CUSTOMERS]
        for text in (CUSTOMERS_CSV, ORDERS_CSV, INVOICES_CSV):
            await customers.import_file(csvimport.parse(text.encode(), "demo.csv"))
        await customers.recompute()
        context = await browser.new_context()
        agent = await context.new_page()
        errors: list[str] = []
        agent.on("pageerror", lambda error: errors.append(str(error)))
        await agent.goto(f"{hub.url}/console/")
        await agent.fill("#username", "alice")
        await agent.fill("#password", AGENT_PASSWORD)
        await agent.click("#login-button")
        await expect(agent.locator("#connection")).to_have_text("online")
        await hub.app[PIPELINE].ingest(
            Envelope(
                channel="email",
                inbox="support",
                direction=Direction.INBOUND,
                idempotency_key="<m1@example.com>",
                received_at=time.time(),
                sender=Identity(kind="email", address="anna@example.com"),
                subject="Rechnung",
                text="Eine Frage zur Rechnung.",
            )
        )
        await agent.locator("#offers li.offer button.accept").click()
        details = agent.locator("#context")
        await expect(details).to_contain_text("K1")
        await expect(details).to_contain_text("Espressomaschine")
        await expect(details.locator("dd").nth(2)).to_have_text("A")  # tier
        await expect(agent.locator("#customer")).to_contain_text("Anna Top")
        assert errors == []
        await context.close()


async def test_console_shows_fax_pages_and_answers_with_a_file(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    import time

    import msgspec
    from PIL import Image
    from playwright.async_api import expect

    from hub.envelope import Direction, Envelope, Identity
    from hub.keys import BLOBS, PIPELINE
    from tests.fake_fax import fake_sinch
    from tests.fax_samples import g4_pdf, page
    from tests.test_fax import fax_settings, sinch_block

    async with fake_sinch() as fake:
        settings = fax_settings(
            sqlite_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub:
            context = await browser.new_context()
            agent = await context.new_page()
            errors: list[str] = []
            agent.on("pageerror", lambda error: errors.append(str(error)))
            await agent.goto(f"{hub.url}/console/")
            await agent.fill("#username", "alice")
            await agent.fill("#password", AGENT_PASSWORD)
            await agent.click("#login-button")
            await expect(agent.locator("#connection")).to_have_text("online")
            png = io.BytesIO()
            Image.new("L", (850, 1100), 255).save(png, format="PNG")
            blobs = hub.app[BLOBS]
            preview = await blobs.put(png.getvalue(), name="page-1.png", content_type="image/png")
            document = await blobs.put(
                b"%PDF-1.4\n%fake\n", name="fax.pdf", content_type="application/pdf"
            )
            await hub.app[PIPELINE].ingest(
                Envelope(
                    channel="fax",
                    inbox="fax",
                    direction=Direction.INBOUND,
                    idempotency_key="fax:test:1",
                    received_at=time.time(),
                    sender=Identity(kind="fax", address="+4930123456"),
                    subject="Fax from +4930123456 (1 page)",
                    text="Bestellung Nr. 4711",
                    attachments=(document, msgspec.structs.replace(preview, inline=True)),
                    metadata={"problems": ["text recognition failed on page(s) 1"]},
                )
            )
            await agent.locator("#offers li.offer button.accept").click()
            page_image = agent.locator("#messages .files .preview img")
            await expect(page_image).to_have_count(1)
            # the picture really loaded (the session cookie reached /api/attachments)
            await expect(page_image).to_have_js_property("naturalWidth", 850)
            await expect(agent.locator("#messages .files .download")).to_contain_text("fax.pdf")
            await expect(agent.locator("#messages .note-flag")).to_have_text(
                "text recognition failed on page(s) 1"
            )

            # answer with a file: uploaded first, then appended to the faxed letter
            enclosure = g4_pdf([page(["Anlage"])])
            await agent.set_input_files(
                "#reply-files",
                files=[{"name": "anlage.pdf", "mimeType": "application/pdf", "buffer": enclosure}],
            )
            await agent.fill("#reply-text", "Anbei die Anlage.")
            await agent.click("#reply-send")
            await expect(agent.locator("#messages .files .download")).to_have_count(2)
            await expect(agent.locator("#messages")).to_contain_text("anlage.pdf")
            for _ in range(100):
                if fake.sent:
                    break
                await asyncio.sleep(0.1)
            [sent] = fake.sent
            assert len(pypdf.PdfReader(io.BytesIO(sent["file"])).pages) == 2
            assert errors == []
            await context.close()


async def test_console_returns_to_the_login_page_when_the_session_ends(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """Logged out everywhere from elsewhere: the open console is closed (4401) and shows the
    login form instead of reconnecting."""
    import aiohttp
    from playwright.async_api import expect

    from tests.helpers import login

    async with running_hub(make_settings(sqlite_url, tmp_path)) as hub:
        context = await browser.new_context()
        agent = await context.new_page()
        await agent.goto(f"{hub.url}/console/")
        await agent.fill("#username", "alice")
        await agent.fill("#password", AGENT_PASSWORD)
        await agent.click("#login-button")
        await expect(agent.locator("#connection")).to_have_text("online")

        token = await login(hub, "alice", AGENT_PASSWORD)  # alice, on another machine
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{hub.url}/api/sessions/revoke",
                json={},
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert (await response.json())["revoked"] == 2
        await expect(agent.locator("#login")).to_be_visible()
        await expect(agent.locator("#app")).to_be_hidden()
        await expect(agent.locator("#connection")).to_have_text("offline")
        await context.close()
