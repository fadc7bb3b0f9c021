"""The duplicate-redelivery counter (``channelhub_messages_duplicate``) counts every copy of a
message that was not stored again: those the store recognized and those a connector answered
from its own cache of what it acknowledged lately (issue 14 item 15). Runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from hub.keys import CONNECTORS, METRICS
from hub.store.schema import messages
from tests.fake_fax import fake_sinch, sinch_fax, sinch_webhook
from tests.fake_twilio import fake_twilio, inbound_fields, post_signed
from tests.fax_samples import g4_pdf
from tests.helpers import running_hub
from tests.test_fax import WEBHOOK, fax_settings, sinch_block
from tests.test_sms import INBOUND, PUBLIC, sms_settings

pytestmark = pytest.mark.integration


def _duplicates(hub: Any, channel: str) -> float:
    value = hub.app[METRICS].registry.get_sample_value(
        "channelhub_messages_duplicate_total", {"channel": channel}
    )
    return float(value or 0.0)


async def _stored(hub: Any) -> int:
    async with hub.store.engine.connect() as connection:
        query = select(func.count()).select_from(messages)
        return int((await connection.execute(query)).scalar_one())


async def test_sms_replays_answered_from_the_connector_cache_are_counted(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_twilio() as fake:
        settings = sms_settings(store_url, tmp_path, fake)
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            fields = inbound_fields()
            copies = await asyncio.gather(
                *(post_signed(session, hub.url, PUBLIC, INBOUND, fields) for _ in range(5))
            )
            assert [status for status, _ in copies] == [200] * 5
            for _ in range(3):  # Twilio's later retries, answered from the cache
                status, _text = await post_signed(session, hub.url, PUBLIC, INBOUND, fields)
                assert status == 200
            assert await _stored(hub) == 1
            assert _duplicates(hub, "sms") == 7


async def test_fax_redeliveries_answered_by_the_connector_are_counted(
    store_url: str, tmp_path: Path
) -> None:
    async with fake_sinch() as fake:
        settings = fax_settings(
            store_url, tmp_path, "sinch", sinch_block(fake), ocr={"enabled": False}
        )
        async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
            fax, pdf = sinch_fax(), g4_pdf()
            for _ in range(3):
                status, _text = await sinch_webhook(
                    session, hub.url + WEBHOOK, "INCOMING_FAX", fax, pdf
                )
                assert status == 200
            await hub.app[CONNECTORS]["fax"].idle()
            assert await _stored(hub) == 1
            assert _duplicates(hub, "fax") == 2
