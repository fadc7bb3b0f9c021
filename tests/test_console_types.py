"""The agent protocol has one source of truth (the msgspec models): the console's generated
TypeScript and docs/agent-protocol.md must say what the models say; the frames the hub builds
must fit them. Plus the protocol additions of issue 18 (automatic, sla_due_at, dispositions)."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec import inspect
from websockets.asyncio.client import connect

from hub.console import frames, protocol, typegen
from hub.console.views import is_automatic, message_view, offer_view, sla_due_at
from hub.store.records import Conversation, Message
from tests.conftest import AGENT_PASSWORD, make_settings
from tests.helpers import agent_client, chat_client, login, running_hub

DOCS = (Path(__file__).resolve().parents[1] / "docs" / "agent-protocol.md").read_text()


def test_committed_typescript_is_generated_from_the_models() -> None:
    assert typegen.TARGET.read_text() == typegen.generate(), (
        "console/src/protocol.gen.ts is stale: run `python -m hub.console.typegen`"
    )
    assert typegen.main(["--check"]) == 0


def test_typegen_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "protocol.gen.ts"
    stale.write_text(typegen.generate().replace("automatic: boolean", "automatic?: boolean"))
    assert typegen.main(["--check", "--output", str(stale)]) == 1
    assert typegen.main(["--output", str(stale)]) == 0
    assert stale.read_text() == typegen.generate()


def test_typescript_marks_optional_and_nullable_fields() -> None:
    text = typegen.generate()
    assert "  author: string | null;\n" in text  # always present, may be null
    assert "  subject?: string | null;\n" in text  # may be missing (live message frames)
    assert 'export interface HelloFrame {\n  type: "hello";' in text
    assert "export type ServerFrame =" in text and "export type ClientFrame =" in text


def _row(table_heading: str, kind: str) -> str:
    section = DOCS.split(table_heading, 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        if line.startswith(f"| `{kind}` |"):
            return line
    raise AssertionError(f"docs/agent-protocol.md has no row for `{kind}` under {table_heading}")


def _fields(model: type) -> list[str]:
    info = inspect.type_info(model)
    assert isinstance(info, inspect.StructType)
    return [field.encode_name for field in info.fields]


@pytest.mark.parametrize(
    "model", typing.get_args(frames.ServerFrame), ids=lambda m: m.__struct_config__.tag
)
def test_docs_list_every_server_frame_and_field(model: type) -> None:
    tag = model.__struct_config__.tag  # type: ignore[attr-defined]
    row = _row("## Server → client frames", tag)
    for name in _fields(model):
        assert f"`{name}`" in row, f"docs: server frame `{tag}` does not mention `{name}`"


@pytest.mark.parametrize(
    "model", typing.get_args(protocol.Command), ids=lambda m: m.__struct_config__.tag
)
def test_docs_list_every_client_frame_and_field(model: type) -> None:
    tag = model.__struct_config__.tag  # type: ignore[attr-defined]
    row = _row("## Client → server frames", tag)
    for name in _fields(model):
        assert f"`{name}`" in row, f"docs: client frame `{tag}` does not mention `{name}`"


@pytest.mark.parametrize(
    ("heading", "model"),
    [
        ("**conversation**", frames.Conversation),
        ("**compose**", frames.Compose),
        ("**customer**", frames.Customer),
        ("**message**", frames.Message),
    ],
)
def test_docs_describe_every_object_field(heading: str, model: type) -> None:
    paragraph = DOCS.split(heading, 1)[1].split("\n\n", 1)[0]
    for name in _fields(model):
        assert f"`{name}`" in paragraph, f"docs: {heading} does not mention `{name}`"


def test_every_error_code_the_hub_raises_is_documented() -> None:
    root = Path(__file__).resolve().parents[1] / "hub"
    codes: set[str] = set()
    for path in (root / "console").glob("*.py"):
        codes |= set(
            re.findall(r'(?:ProtocolError|error_frame|ReplyRefused)\(\s*"(\w+)"', path.read_text())
        )
    table = DOCS.split("## Error codes", 1)[1]
    missing = sorted(code for code in codes if f"`{code}`" not in table)
    assert codes and not missing, f"undocumented error codes: {missing}"


# -- the additions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "kind", "author", "automatic"),
    [
        ("outbound", "message", None, True),  # a rule's auto-reply
        ("outbound", None, None, True),
        ("outbound", "message", "alice", False),
        ("outbound", "note", "alice", False),
        ("outbound", "note", None, False),
        ("inbound", "message", None, False),
    ],
)
def test_automatic_messages(
    direction: str, kind: str | None, author: str | None, automatic: bool
) -> None:
    assert is_automatic(direction, kind, author) is automatic


def _message(**fields: Any) -> Message:
    base: dict[str, Any] = {
        "id": "m",
        "conversation_id": "x",
        "kind": "message",
        "direction": "inbound",
        "channel": "webchat",
        "author": None,
        "text": "hi",
        "subject": None,
        "rules": None,
        "delivery_status": None,
        "delivery_error": None,
        "created_at": 5.0,
    }
    return Message(**{**base, **fields})


def _conversation(**fields: Any) -> Conversation:
    base: dict[str, Any] = {
        "id": "x",
        "customer_id": "c",
        "channel": "webchat",
        "inbox": "webchat",
        "thread_key": None,
        "status": "queued",
        "queue": "general",
        "priority": "normal",
        "assignee": None,
        "subject": None,
        "decision": None,
        "rules_digest": None,
        "disposition": None,
        "created_at": 900.0,
        "updated_at": 900.0,
        "queued_at": 1000.0,
        "closed_at": None,
        "customer": CUSTOMER,
        "recipient": None,
        "last_inbound_at": None,
        "opt_out": None,
        "messages": (_message(),),
    }
    return Conversation(**{**base, **fields})


CUSTOMER: dict[str, Any] = {
    "id": "c",
    "kind": "customer",
    "known": False,
    "customer_number": None,
    "name": None,
    "company": None,
    "tier": None,
    "tier_source": None,
    "crm_fetched_at": None,
    "lifetime_value": 0,
    "revenue_window": 0,
    "orders_12m": 0,
    "last_order_at": None,
    "days_since_last_order": None,
    "last_purchase": None,
    "payment_punctuality": None,
    "overdue_invoices": 0,
    "rfm": None,
    "open_conversations": 1,
    "tags": [],
    "attributes": {},
    "identities": [],
    "history": [],
    "computed_at": None,
}


def test_sla_due_at_prefers_the_rules_then_the_queue() -> None:
    assert sla_due_at(_conversation(decision={"sla_seconds": 60}), 3600) == 1060.0
    assert sla_due_at(_conversation(decision={}), 3600) == 4600.0
    assert sla_due_at(_conversation(decision=None), None) is None
    # never queued (assigned directly): counted from its creation
    assert sla_due_at(_conversation(queued_at=None, decision={"sla_seconds": 10})) == 910.0


def test_views_fit_the_models() -> None:
    view = message_view(_message(direction="outbound", text="auto"))
    assert view["automatic"] is True
    msgspec.convert(msgspec.to_builtins(view), frames.Message)
    note = message_view(_message(direction="outbound", kind="note", author="alice"))
    assert note["automatic"] is False


async def test_hello_snapshot_offer_and_auto_reply_frames(sqlite_url: str, tmp_path: Path) -> None:
    """hello names the menus, the auto-reply is marked automatic in the console and the widget,
    offers carry the SLA, and a close with an unknown disposition is refused."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\ndefaults: {queue: general}\ntemplates: {auto: 'We answer soon.'}\n"
        'rules:\n  - name: auto\n    when: channel == "webchat"\n'
        "    route: {sla: 10m}\n    auto_reply: auto\n"
    )
    settings = make_settings(
        sqlite_url,
        tmp_path,
        rules={"path": str(rules)},
        dispatch={"offer_timeout": "30s", "dispositions": ["solved", "spam"], "wrap_up": "5s"},
    )
    async with running_hub(settings) as hub:
        token = await login(hub, "alice", AGENT_PASSWORD)
        async with agent_client(hub, token) as (agent, snapshot):
            assert snapshot["presence"] == "available"
            async with chat_client(hub) as (customer, first):
                await customer.send(type="message", client_id="1", text="Hello")
                auto = await customer.expect("message")
                assert auto["automatic"] is True and auto["from"] == "agent"
                offer = await agent.expect("offer")
                assert offer["sla_due_at"] == pytest.approx(offer["expires_at"] - 30 + 600, abs=5)
                conversation_id = offer["conversation_id"]
                await agent.send(type="accept", conversation_id=conversation_id)
                conversation = (await agent.expect("conversation"))["conversation"]
                inbound, automatic = conversation["messages"]
                assert automatic["automatic"] is True and automatic["author"] is None
                assert inbound["automatic"] is False
                await agent.send(
                    type="close", conversation_id=conversation_id, disposition="resolved"
                )
                error = await agent.expect("error", code="bad_disposition")
                assert error["ref"] == conversation_id and "solved, spam" in error["message"]
                await agent.send(
                    type="close", conversation_id=conversation_id, disposition="x" * 200
                )
                await agent.expect("error", code="bad_disposition")
                await agent.send(type="close", conversation_id=conversation_id)  # the default
                closed = await agent.expect("conversation_closed")
                assert closed["disposition"] == "solved"
            # the widget's history marks it too
            async with chat_client(hub, token=first["token"]) as (_, welcome):
                marks = [(item["from"], item["automatic"]) for item in welcome["history"]]
                assert marks == [("you", False), ("agent", True)]
        async with connect(f"{hub.ws_url}/ws/agent") as socket:
            await socket.send(json.dumps({"type": "auth", "token": token}))
            hello = frames.check_server_frame(await socket.recv())
            assert isinstance(hello, frames.HelloFrame)
            assert hello.dispositions == ["solved", "spam"]
            assert hello.queues == ["general", "billing"] and hello.wrap_up == 5.0
            assert [a.id for a in hello.agents] == ["alice", "bob"]
            assert isinstance(frames.check_server_frame(await socket.recv()), frames.SnapshotFrame)


def test_settings_check_canned_responses(tmp_path: Path) -> None:
    from hub.errors import ConfigError

    url = "sqlite+aiosqlite:///x.db"
    ok = make_settings(url, tmp_path, canned_responses=[{"name": "hi", "text": "Hello"}])
    assert ok.canned_responses[0].queues == ()
    for bad in (
        [{"name": "hi", "text": "a"}, {"name": "hi", "text": "b"}],  # twice
        [{"name": "hi", "text": "a", "queues": ["nowhere"]}],
        [{"name": "Hi There", "text": "a"}],
        [{"name": "hi", "text": ""}],
        [{"name": "hi", "text": "x" * 5001}],
    ):
        with pytest.raises(ConfigError):
            make_settings(url, tmp_path, canned_responses=bad)


async def test_hello_sends_the_canned_responses_of_the_agents_queues(
    sqlite_url: str, tmp_path: Path
) -> None:
    from tests.conftest import _HASH

    settings = make_settings(
        sqlite_url,
        tmp_path,
        agents=[
            {"id": "alice", "name": "A", "password_hash": _HASH, "queues": ["billing"]},
            {"id": "bob", "name": "B", "password_hash": _HASH},
        ],
        canned_responses=[
            {"name": "all", "text": "everywhere"},
            {"name": "gen", "text": "general only", "queues": ["general"]},
            {"name": "bill", "text": "billing only", "queues": ["billing"]},
        ],
    )
    async with running_hub(settings) as hub:
        for agent, expected in (("alice", ["all", "bill"]), ("bob", ["all", "gen", "bill"])):
            token = await login(hub, agent, AGENT_PASSWORD)
            async with connect(f"{hub.ws_url}/ws/agent") as socket:
                await socket.send(json.dumps({"type": "auth", "token": token}))
                hello = frames.check_server_frame(await socket.recv())
                assert isinstance(hello, frames.HelloFrame)
                assert [c.name for c in hello.canned] == expected


def test_settings_reject_bad_dispositions(tmp_path: Path) -> None:
    from hub.errors import ConfigError

    with pytest.raises(ConfigError):
        make_settings("sqlite+aiosqlite:///x.db", tmp_path, dispatch={"dispositions": []})
    with pytest.raises(ConfigError):
        make_settings("sqlite+aiosqlite:///x.db", tmp_path, dispatch={"dispositions": ["a b"]})


def test_offer_view_fits_the_model() -> None:
    view = offer_view(_conversation(queued_at=5.0), 35.0, 60.0)
    assert view["sla_due_at"] == 65.0 and view["preview"] == "hi"
    msgspec.convert(msgspec.to_builtins(view), frames.OfferView)
