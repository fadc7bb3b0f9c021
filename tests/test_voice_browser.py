"""Phone calls in the console, in headless Chromium: the screen pop that rings with a call
offer (customer, instructions, history), the call panel with its events, the recording to
play and the call back button."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fake_twilio import ACCOUNT_SID, fake_twilio
from tests.helpers import running_hub
from tests.test_console_browser import browser, check_axe, console, log_in, shoot, shots_dir
from tests.voice_helpers import (
    ALICE_PHONE,
    CALLER,
    call_fields,
    call_sid,
    local,
    post,
    twiml,
    voice_settings,
)

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, used by name


async def test_screen_pop_call_panel_and_call_back(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    async with fake_twilio() as fake:
        voice = fake.voice
        async with (
            running_hub(voice_settings(sqlite_url, tmp_path, fake)) as hub,
            aiohttp.ClientSession() as session,
            console(browser, hub, "alice") as page,
        ):
            # a caller leaves a voicemail before anyone is there; then Alice logs in
            sid = call_sid()
            status, text = await post(session, hub, "/voice", call_fields(sid))
            assert status == 200, text
            enqueue = twiml(text).find("Enqueue")
            assert enqueue is not None
            status, text = await post(
                session,
                hub,
                local(enqueue.get("action") or ""),
                {**call_fields(sid), "QueueResult": "leave", "QueueTime": "200"},
            )
            record = twiml(text).find("Record")
            assert record is not None
            status, _ = await post(
                session,
                hub,
                local(record.get("recordingStatusCallback") or ""),
                {
                    "AccountSid": ACCOUNT_SID,
                    "CallSid": sid,
                    "RecordingSid": "RE" + "e" * 32,
                    "RecordingUrl": voice.recording_url("RE" + "e" * 32),
                    "RecordingStatus": "completed",
                    "RecordingDuration": "4",
                },
            )
            assert status == 204
            voice.ended.add(sid)

            await log_in(page, hub, "alice")
            pop = page.locator("#screen-pop")
            await expect(pop).to_be_visible()
            await expect(pop).to_contain_text("Incoming call")
            await expect(pop).to_contain_text(CALLER)
            await check_axe(page, "screen pop")
            await shoot(page, shots_dir(tmp_path), "voice-screen-pop")

            await pop.locator("button.accept").click()
            await expect(pop).to_be_hidden()
            panel = page.locator("#call-panel")
            await expect(panel.locator(".call-events li")).to_contain_text(["went to voicemail"])
            await expect(panel.locator("audio")).to_have_count(1)
            await expect(panel.locator(".call-events")).to_contain_text("failed")
            await page.locator("#call-back").click()
            await expect(panel.locator(".call-events")).to_contain_text("calling back")
            assert [leg["To"] for leg in voice.placed] == [ALICE_PHONE, CALLER]
            await check_axe(page, "call panel")
            await shoot(page, shots_dir(tmp_path), "voice-call-panel")
