"""The agent workspace in headless Chromium (Debian's, driven by Playwright): offer cards,
notifications, transfer, reassignment from the board, a keyboard-only shift, both languages,
phone width, and axe-core on every view. Screenshots of every view at 1366 and 360 px go to
``$CHANNELHUB_SCREENSHOTS`` (or the test's temporary directory) for a person to look at."""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _HASH, AGENT_PASSWORD, make_settings
from tests.helpers import IN_CI, RunningHub, chat_client, running_hub
from tests.test_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "console" / "node_modules" / "axe-core" / "axe.min.js"
WIDE = {"width": 1366, "height": 800}
PHONE = {"width": 360, "height": 740}

RULES = """version: 1
defaults: {queue: general}
rules:
  - name: vip-desk
    when: customer.tier == "A"
    route: {queue: premium, priority: high, sla: 1h}
    instructions: ["Greet by name and offer a callback within the hour.", "Check the open invoice."]
    tags: [vip]
"""

# what a page's notification and sound calls did (the real ones need a desktop and speakers)
SPIES = """
window.__notes = [];
window.__chimes = 0;
Object.defineProperty(document, "visibilityState", {get: () => window.__visibility || "visible"});
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.__notes.push({title, body: options && options.body}); }
  close() {}
};
window.AudioContext = class {
  constructor() { this.currentTime = 0; this.destination = {}; }
  createOscillator() {
    window.__chimes += 0.5;
    return {frequency: {}, connect: (g) => g, start() {}, stop() {}};
  }
  createGain() {
    return {gain: {setValueAtTime() {}, exponentialRampToValueAtTime() {}}, connect: (d) => d};
  }
};
"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium, as in test_browser.py (never `playwright install`)."""
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("chromium is not installed (CI=true requires it; see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def shots_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("CHANNELHUB_SCREENSHOTS", tmp_path / "screenshots"))
    target.mkdir(parents=True, exist_ok=True)
    return target


def settings(url: str, tmp_path: Path, wrap_up: str = "20s") -> Any:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return make_settings(
        url,
        tmp_path,
        rules={"path": str(rules)},
        queues=[{"name": "general"}, {"name": "premium", "sla": "2h"}, {"name": "billing"}],
        dispatch={"offer_timeout": "60s", "disconnect_grace": "1s", "wrap_up": wrap_up},
        canned_responses=[
            {"name": "thanks", "text": "Thank you, {customer.name}. {agent.name}"},
            {
                "name": "parcel-late",
                "text": "Your order of {customer.last_order} ({customer.last_purchase}) is late.",
                "queues": ["premium"],
            },
            {"name": "refund", "text": "Refund", "queues": ["billing"]},
        ],
        agents=[
            {
                "id": "alice",
                "name": "Alice Agent",
                "password_hash": _HASH,
                "max_conversations": 3,
                "role": "supervisor",
            },
            {"id": "bob", "name": "Bob Builder", "password_hash": _HASH, "max_conversations": 3},
        ],
    )


async def load_customers(hub: RunningHub) -> None:
    from hub.customers import csvimport
    from hub.keys import CUSTOMERS
    from tests.test_customers import CUSTOMERS_CSV, INVOICES_CSV, ORDERS_CSV

    customers = hub.app[CUSTOMERS]
    for text in (CUSTOMERS_CSV, ORDERS_CSV, INVOICES_CSV):
        await customers.import_file(csvimport.parse(text.encode(), "demo.csv"))
    await customers.recompute()


async def email(hub: RunningHub, sender: str, text: str, key: str) -> None:
    from hub.envelope import Direction, Envelope, Identity
    from hub.keys import PIPELINE

    await hub.app[PIPELINE].ingest(
        Envelope(
            channel="email",
            inbox="support",
            direction=Direction.INBOUND,
            idempotency_key=key,
            received_at=time.time(),
            sender=Identity(kind="email", address=sender),
            subject="Rechnung",
            text=text,
        )
    )


@asynccontextmanager
async def console(
    browser: Any,
    hub: RunningHub,
    agent: str,
    *,
    viewport: dict[str, int] = WIDE,
    locale: str = "en-GB",
    axe: bool = True,
) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=viewport, locale=locale)
    await context.add_init_script(SPIES)
    if axe:
        await context.add_init_script(path=str(AXE))
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    try:
        yield page
    finally:
        await context.close()
    assert errors == [], errors


async def log_in(page: Any, hub: RunningHub, agent: str) -> None:
    from playwright.async_api import expect

    await page.goto(f"{hub.url}/console/")
    await page.fill("#username", agent)
    await page.fill("#password", AGENT_PASSWORD)
    await page.click("#login-button")
    await expect(page.locator("#connection")).to_have_class("badge online")


async def check_axe(page: Any, view: str) -> None:
    """No serious or critical accessibility violation on what the page shows now."""
    if not AXE.exists():
        if IN_CI:
            pytest.fail("console/node_modules/axe-core is missing (make install runs npm ci)")
        pytest.skip("axe-core not installed (cd console && npm ci)")
    result = await page.evaluate("async () => await axe.run(document)")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{view}: {bad}"


async def no_sideways_scroll(page: Any, view: str) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    viewport = await page.evaluate("window.innerWidth")
    assert width <= viewport, f"{view}: the page is {width}px wide in a {viewport}px window"


async def shoot(page: Any, directory: Path, name: str) -> None:
    await page.screenshot(path=str(directory / f"{name}.png"), full_page=False)


async def test_offer_card_title_badge_sound_and_desktop_notification(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    async with running_hub(settings(sqlite_url, tmp_path)) as hub:
        await load_customers(hub)
        async with console(browser, hub, "alice") as page:
            await log_in(page, hub, "alice")
            await page.evaluate("window.__visibility = 'hidden'")
            await email(hub, "anna@example.com", "Eine Frage zur Rechnung.", "<m1@example.com>")
            await expect(page.locator("#offers li.offer")).to_have_count(1)
            card = page.locator("#offers li.offer").first
            await expect(card.locator("strong").first).to_have_text("Anna Top")
            await expect(card.locator(".tier")).to_have_text("Tier A")
            await expect(card.locator(".queue")).to_have_text("Queue: premium")
            await expect(card.locator(".priority")).to_have_text("high")
            await expect(card.locator(".channel")).to_have_text("email")
            await expect(card.locator(".instruction")).to_have_text(
                "Greet by name and offer a callback within the hour."
            )
            await expect(card.locator(".preview")).to_have_text("Eine Frage zur Rechnung.")
            await expect(card.locator(".sla")).to_have_text(re.compile(r"Answer within 5\d:\d\d"))
            await expect(card.locator(".expiry")).to_have_text(
                re.compile(r"Offer ends in 0:[0-5]\d")
            )
            await expect(page).to_have_title("(1) channelhub")
            assert await page.evaluate("window.__chimes") == 1
            notes = await page.evaluate("window.__notes")
            assert notes == [
                {"title": "New conversation: Anna Top", "body": "Eine Frage zur Rechnung."}
            ]

            # muted: the next offer only changes the title
            await page.click("#sound")
            await expect(page.locator("#sound")).to_have_text("Sound off")
            await email(hub, "bert@example.com", "Zweite Frage", "<m2@example.com>")
            await expect(page.locator("#offers li.offer")).to_have_count(2)
            await expect(page).to_have_title("(2) channelhub")
            assert await page.evaluate("window.__chimes") == 1
            await check_axe(page, "offers")

            await card.locator("button.accept").click()
            await expect(page.locator("#customer")).to_have_text("Anna Top")
            await expect(page.locator("#instructions li")).to_have_count(2)
            await expect(page).to_have_title("(1) channelhub")
            await expect(page.locator(".conversation-head .sla")).to_contain_text("Answer within")

            # canned responses: "/" lists the queue's and the global ones, Enter inserts
            await page.locator("#reply-text").focus()
            await page.keyboard.type("Hello! /")
            options = page.locator("#canned-suggestions [role=option]")
            await expect(options).to_have_count(2)  # not billing's "refund"
            await page.keyboard.type("par")
            await expect(options).to_have_count(1)
            await check_axe(page, "canned responses")
            await shoot(page, shots_dir(tmp_path), "canned-1366-en")
            await page.keyboard.press("Enter")
            await expect(page.locator("#canned-suggestions")).to_have_count(0)
            await expect(page.locator("#reply-text")).to_have_value(
                "Hello! Your order of 01/11/2026 (Espressomaschine) is late."
            )
            await page.keyboard.press("Enter")  # now it sends
            await expect(page.locator("#messages li.outbound .text")).to_have_text(
                "Hello! Your order of 01/11/2026 (Espressomaschine) is late."
            )


async def test_keyboard_only_shift_from_login_to_close(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """Log in, accept, reply, note, close and use the shortcut sheet without a mouse."""
    from playwright.async_api import expect

    async with (
        running_hub(settings(sqlite_url, tmp_path)) as hub,
        console(browser, hub, "bob") as page,
        chat_client(hub) as (customer, _),
    ):
        await page.goto(f"{hub.url}/console/")
        await expect(page.locator("#username")).to_be_visible()
        await page.keyboard.press("Tab")  # the first control on the page: the agent id
        await expect(page.locator("#username")).to_be_focused()
        await page.keyboard.type("bob")
        await page.keyboard.press("Tab")
        await page.keyboard.type(AGENT_PASSWORD)
        await page.keyboard.press("Enter")
        await expect(page.locator("#connection")).to_have_class("badge online")

        await customer.send(type="message", client_id="1", text="Wo ist mein Paket?")
        await expect(page.locator("#offers li.offer")).to_have_count(1)
        await page.keyboard.press("?")
        await expect(page.locator("#shortcuts")).to_be_visible()
        await check_axe(page, "shortcut sheet")
        await page.keyboard.press("Escape")
        await expect(page.locator("#shortcuts")).to_have_count(0)

        await page.keyboard.press("a")
        await expect(page.locator("#messages li.inbound .text")).to_have_text("Wo ist mein Paket?")
        await page.keyboard.press("n")
        await expect(page.locator("#reply-text")).to_be_focused()
        await expect(page.locator("#reply-note")).to_be_checked()
        await page.keyboard.type("Kunde wartet seit Montag")
        await page.keyboard.press("Enter")
        await expect(page.locator("#messages li.note .text")).to_have_text(
            "Kunde wartet seit Montag"
        )
        # the note box unticks after a note: the next message is a reply
        await expect(page.locator("#reply-note")).not_to_be_checked()
        await page.keyboard.type("Es ist unterwegs.")
        await page.keyboard.press("Enter")
        reply = await customer.expect("message")
        assert reply["text"] == "Es ist unterwegs." and reply["automatic"] is False
        await page.keyboard.press("Escape")  # leave the text box
        await page.keyboard.press("c")
        await expect(page.locator("#disposition")).to_be_focused()
        await page.keyboard.press("Tab")
        await expect(page.locator("#close-conversation")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("#conversations li")).to_have_count(0)
        await expect(page.locator(".read-only")).to_be_visible()
        await expect(page.locator("#wrap-up")).to_contain_text("Wrap-up: ")
        await page.keyboard.press("3")
        await expect(page.locator("#closed-list li")).to_have_count(1)
        await expect(page.locator(".timeline .event").last).to_contain_text("Closed: Resolved")


async def test_transfer_to_a_colleague_and_reassign_from_the_live_board(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    async with (
        running_hub(settings(sqlite_url, tmp_path)) as hub,
        console(browser, hub, "alice") as alice,
        console(browser, hub, "bob") as bob,
        chat_client(hub) as (customer, _),
    ):
        await log_in(alice, hub, "alice")
        await log_in(bob, hub, "bob")
        await alice.click("#view-board")
        await expect(alice.locator("#queues tr[data-queue=general] td").first).to_have_text("0")

        await alice.click("#presence")
        await alice.select_option("#presence", "away")  # so the work goes to bob
        await expect(alice.locator("#presence")).to_have_value("away")
        await customer.send(type="message", client_id="1", text="Hallo, Rechnung falsch")
        await bob.locator("#offers li.offer button.accept").click()
        await expect(bob.locator("#customer")).to_be_visible()
        # the board follows live: bob now holds one conversation
        row = alice.locator("#agents tr[data-agent=bob]")
        await expect(row.locator("td").nth(1)).to_have_text("1/3")
        await check_axe(alice, "board")

        # bob hands it to alice with a note; alice is offered it first
        await alice.select_option("#presence", "available")
        await bob.click("#transfer")
        await expect(bob.locator("#transfer-dialog")).to_be_visible()
        await check_axe(bob, "transfer dialog")
        await bob.select_option("#transfer-target", "agent:alice")
        await bob.fill("#transfer-note", "Rechnung bitte prüfen")
        await bob.click("#transfer-submit")
        await expect(bob.locator("#conversations li")).to_have_count(0)
        await expect(bob.locator(".timeline .event").last).to_contain_text("transferred")
        await alice.locator("#offers li.offer button.accept").click()
        await expect(alice.locator("#customer")).to_be_visible()

        # alice, as supervisor, reassigns it to bob from the board
        await alice.click("#view-board")
        alice_row = alice.locator("#agents tr[data-agent=alice]")
        await expect(alice_row.locator(".reassign")).to_have_count(1)
        await alice_row.locator(".reassign select").select_option("bob")
        await alice_row.locator(".reassign button").click()
        await expect(alice.locator(".notice")).to_contain_text("bob")
        await bob.locator("#offers li.offer button.accept").click()
        await expect(bob.locator("#conversations li")).to_have_count(1)


async def test_german_console(browser: Any, sqlite_url: str, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with running_hub(settings(sqlite_url, tmp_path)) as hub:
        await load_customers(hub)
        async with console(browser, hub, "bob", locale="de-DE") as page:
            await page.goto(f"{hub.url}/console/")
            await expect(page.locator("#login-button")).to_have_text("Anmelden")
            await expect(page.locator("html")).to_have_attribute("lang", "de")
            await log_in(page, hub, "bob")
            await email(hub, "anna@example.com", "Frage", "<de1@example.com>")
            card = page.locator("#offers li.offer")
            await expect(card.locator("button.accept")).to_have_text("Annehmen")
            await expect(card.locator(".sla")).to_contain_text("Antwort binnen")
            await expect(card.locator(".priority")).to_have_text("hoch")
            await card.locator("button.accept").click()
            await expect(page.locator("#context")).to_contain_text("Umsatz gesamt")
            await expect(page.locator("#context")).to_contain_text("800,00 €")
            # switched to English by hand; the choice is remembered
            await page.select_option("#language", "en")
            await expect(page.locator("#context")).to_contain_text("Lifetime value")
            await page.reload()
            await expect(page.locator("#connection")).to_have_text("online")


async def test_every_view_at_desk_and_phone_width(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """Screenshots of every view at 1366 and 360 px, axe on each, and no sideways scrolling."""
    from playwright.async_api import expect

    directory = shots_dir(tmp_path)
    async with running_hub(settings(sqlite_url, tmp_path, wrap_up="0s")) as hub:
        await load_customers(hub)
        for label, viewport in (("1366", WIDE), ("360", PHONE)):
            for lang, locale in (("en", "en-GB"), ("de", "de-DE")):
                async with console(browser, hub, "alice", viewport=viewport, locale=locale) as page:
                    name = f"{label}-{lang}"
                    await page.goto(f"{hub.url}/console/")
                    await expect(page.locator("#login")).to_be_visible()
                    await shoot(page, directory, f"login-{name}")
                    await check_axe(page, f"login {name}")
                    await no_sideways_scroll(page, f"login {name}")
                    await log_in(page, hub, "alice")
                    key = f"<{name}@example.com>"
                    await email(hub, "anna@example.com", "Meine Rechnung <b>stimmt</b> nicht.", key)
                    await expect(page.locator("#offers li.offer")).to_have_count(1)
                    await shoot(page, directory, f"offers-{name}")
                    await check_axe(page, f"offers {name}")
                    await no_sideways_scroll(page, f"offers {name}")
                    await page.locator("#offers li.offer button.accept").click()
                    await expect(page.locator("#customer")).to_have_text("Anna Top")
                    await page.fill(
                        "#reply-text",
                        "Ich prüfe das sofort." if lang == "de" else "Checking it now.",
                    )
                    await page.keyboard.press("Enter")
                    await expect(page.locator("#messages li.outbound")).to_have_count(1)
                    await shoot(page, directory, f"conversation-{name}")
                    await check_axe(page, f"conversation {name}")
                    await no_sideways_scroll(page, f"conversation {name}")
                    if viewport is PHONE:
                        await page.click(".conversation-head .back")
                        await expect(page.locator("#conversations li")).to_have_count(1)
                        await shoot(page, directory, f"list-{name}")
                        await check_axe(page, f"list {name}")
                        await no_sideways_scroll(page, f"list {name}")
                        await page.locator("#conversations li button").click()
                    await page.click("#transfer")
                    await shoot(page, directory, f"transfer-{name}")
                    await page.keyboard.press("Escape")
                    await page.click("#close-conversation")
                    await expect(page.locator(".read-only")).to_be_visible()
                    if viewport is PHONE:  # one column: back to the list first
                        await page.click(".conversation-head .back")
                    await page.click("#view-closed")
                    await shoot(page, directory, f"closed-{name}")
                    await check_axe(page, f"closed {name}")
                    await no_sideways_scroll(page, f"closed {name}")
                    await page.click("#view-board")
                    await expect(page.locator("#queues")).to_be_visible()
                    await shoot(page, directory, f"board-{name}")
                    await check_axe(page, f"board {name}")
                    await no_sideways_scroll(page, f"board {name}")
                    await page.click("#help")
                    await expect(page.locator("#shortcuts")).to_be_visible()
                    await shoot(page, directory, f"shortcuts-{name}")
                    await page.keyboard.press("Escape")
                    if viewport is PHONE:
                        await page.click(".board-head .back")
                        await expect(page.locator("#view-mine")).to_be_visible()


async def test_web_chat_widget_at_phone_width(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """The widget stays on screen at 360 px (the demo page's <pre> used to push it off) and
    labels an automatic reply as automatic, in English and German."""
    from playwright.async_api import expect

    directory = shots_dir(tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\ndefaults: {queue: general}\ntemplates: {auto: 'Wir melden uns gleich.'}\n"
        'rules:\n  - name: auto\n    when: channel == "webchat"\n    auto_reply: auto\n'
    )
    async with running_hub(make_settings(sqlite_url, tmp_path, rules={"path": str(rules)})) as hub:
        for locale, label, send in (
            ("en-GB", "Automatic reply", "Send"),
            ("de-DE", "Automatische Antwort", "Senden"),
        ):
            context = await browser.new_context(viewport=PHONE, locale=locale)
            await context.add_init_script(path=str(AXE))
            page = await context.new_page()
            await page.goto(f"{hub.url}/chat/")
            widget = page.locator("#channelhub-chat")
            await expect(widget).to_be_visible()
            await expect(page.locator(".chh-send")).to_have_text(send)
            await page.fill(".chh-input", "Hallo")
            await page.keyboard.press("Enter")
            automatic = page.locator(".chh-msg.chh-automatic")
            await expect(automatic).to_contain_text("Wir melden uns gleich.")
            await expect(automatic.locator(".chh-label")).to_have_text(label)
            box = await widget.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
            await no_sideways_scroll(page, f"chat {locale}")
            await page.screenshot(path=str(directory / f"widget-360-{locale}.png"))
            await check_axe(page, f"widget {locale}")
            await context.close()
