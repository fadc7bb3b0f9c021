"""The pure ingest planner, table-driven: each row is the inputs (envelope, what is stored, the
customer, the decision) and the whole plan expected. Also the batch fold, the rows the plans
become, and the customer the rules are shown (``foreseen``). No database, no clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from hub.bus import MESSAGES, OUTBOX, AttachmentListed, MessageStored, OutboxReady
from hub.customers.context import CustomerRef
from hub.customers.linking import customer_of
from hub.customers.providers import Lookup
from hub.envelope import Attachment, Direction, Envelope, Identity, Outbound, ThreadHints
from hub.ingest.customer import Arrival, foreseen
from hub.ingest.plan import (
    Action,
    Audit,
    Existing,
    IngestPlan,
    Publication,
    claim_note,
    plan,
    plan_batch,
)
from hub.ingest.rows import batch_rows
from hub.store.ingest import ConversationState
from rules.context import CustomerFacts
from rules.decision import Decision, Priority

NOW = 5000.0
ANNA = "cust-anna"
EVE = "cust-eve"
ROUTED = Decision(
    queue="billing",
    priority=Priority.HIGH,
    skills=("de",),
    agent="alice",
    sla_seconds=600,
    rules=("vip",),
    revision="r1",
)
ANSWERING = msgspec.structs.replace(ROUTED, auto_reply="Thanks, we are on it.")
FILE = Attachment(
    name="invoice.pdf", content_type="application/pdf", size=3, sha256="ab", blob_ref="ab"
)


def ids() -> Callable[[], str]:
    """new_id for the planner: id-1, id-2, ... in the order it asks."""
    counter = iter(range(1, 100))
    return lambda: f"id-{next(counter)}"


def envelope(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "channel": "webchat",
        "inbox": "web",
        "direction": Direction.INBOUND,
        "idempotency_key": "k1",
        "sender": Identity(kind="webchat", address="visitor"),
        "received_at": 1000.0,
        "thread": ThreadHints(session="visitor"),
        "text": "Hallo",
    }
    return Envelope(**{**fields, **changes})


def state(conversation_id: str, status: str = "queued", **changes: Any) -> ConversationState:
    fields: dict[str, Any] = {
        "id": conversation_id,
        "inbox": "web",
        "thread_key": "visitor",
        "customer_id": ANNA,
        "status": status,
        "assignee": "bob" if status != "queued" else None,
        "queue": "general",
        "priority": "normal",
        "queued_at": 10.0,
    }
    return ConversationState(**{**fields, **changes})


def created(conversation_id: str = "id-1", **changes: Any) -> ConversationState:
    """A conversation as ROUTED starts it."""
    fields = {"queue": "billing", "priority": "high", "queued_at": NOW, "assignee": None}
    return state(conversation_id, **{**fields, **changes})


def received(conversation_id: str, message_id: str) -> Audit:
    return Audit(
        kind="message.received",
        conversation_id=conversation_id,
        message_id=message_id,
        data={"channel": "webchat", "inbox": "web"},
    )


def routed(kind: str, conversation_id: str) -> Audit:
    return Audit(
        kind=kind, conversation_id=conversation_id, data={"queue": "billing", "rules": ["vip"]}
    )


def refused(conversation_id: str, customer: str = ANNA) -> Audit:
    data = {"inbox": "web", "kind": "webchat", "address": "visitor", "customer": customer}
    return Audit(kind="thread.refused", conversation_id=conversation_id, data=data)


def stored_event(
    conversation: ConversationState,
    message_id: str,
    action: Action,
    *,
    customer: str = ANNA,
    attachments: tuple[AttachmentListed, ...] = (),
) -> Publication:
    """The MessageStored the plan publishes (the rules' asks only for new or reopened work)."""
    asks = action is not Action.APPEND
    return (
        MESSAGES,
        MessageStored(
            conversation_id=conversation.id,
            message_id=message_id,
            direction="inbound",
            conversation_created=action is Action.CREATE,
            reopened=action is Action.REOPEN,
            status=conversation.status,
            assignee=conversation.assignee,
            queue=conversation.queue,
            priority=conversation.priority,
            queued_at=conversation.queued_at,
            channel="webchat",
            text="Hallo",
            created_at=1000.0,
            customer_id=customer,
            skills=("de",) if asks else (),
            preferred_agent="alice" if asks else None,
            sla=600 if asks else None,
            attachments=attachments,
        ),
    )


def expected(
    action: Action,
    conversation: ConversationState,
    message_id: str,
    audit: tuple[Audit, ...],
    *,
    stored: Envelope | None = None,
    decision: Decision = ROUTED,
    customer: str = ANNA,
    attachment_ids: tuple[str, ...] = (),
    auto_reply: Outbound | None = None,
    extra: tuple[Publication, ...] = (),
    attachments: tuple[AttachmentListed, ...] = (),
) -> Callable[[Envelope], IngestPlan]:
    """The whole plan, given the envelope the row sends (stored as sent unless ``stored``)."""

    def build(sent: Envelope) -> IngestPlan:
        return IngestPlan(
            action=action,
            conversation=conversation,
            envelope=stored or sent,
            customer_id=customer,
            decision=decision,
            message_id=message_id,
            attachment_ids=attachment_ids,
            auto_reply=auto_reply,
            audit=audit,
            publish=(
                stored_event(
                    conversation, message_id, action, customer=customer, attachments=attachments
                ),
                *extra,
            ),
        )

    return build


CLOSED_OF_ANNA = state("c-old", "closed", thread_key=None)
OPEN_OF_EVE = state("c-eve", "assigned", customer_id=EVE, thread_key=None)
REPLY = ThreadHints(session="visitor", in_reply_to="<m0>", reopen=True)
AUTO_REPLY = Outbound(
    message_id="id-3",
    conversation_id="id-1",
    inbox="web",
    idempotency_key="auto:id-2",
    recipient=Identity(kind="webchat", address="visitor"),
    text="Thanks, we are on it.",
    thread=ThreadHints(session="visitor"),
    created_at=NOW,
)

# name, envelope changes, existing, customer, decision -> expected plan
ROWS: list[
    tuple[str, dict[str, Any], Existing, str, Decision, Callable[[Envelope], IngestPlan]]
] = [
    (
        "a first message starts a conversation as the rules route it",
        {},
        Existing(),
        ANNA,
        ROUTED,
        expected(
            Action.CREATE,
            created(),
            "id-2",
            (routed("conversation.created", "id-1"), received("id-1", "id-2")),
        ),
    ),
    (
        "the next message joins the open conversation of its session as it is",
        {},
        Existing(session=state("c1", "assigned")),
        ANNA,
        ROUTED,
        expected(Action.APPEND, state("c1", "assigned"), "id-1", (received("c1", "id-1"),)),
    ),
    (
        "a reply to a closed conversation reopens it when the channel says so",
        {"thread": REPLY},
        Existing(linked=CLOSED_OF_ANNA),
        ANNA,
        ROUTED,
        expected(
            Action.REOPEN,
            created("c-old", thread_key=None),
            "id-1",
            (routed("conversation.reopened", "c-old"), received("c-old", "id-1")),
        ),
    ),
    (
        "without reopen a reply to a closed conversation joins its session's open one",
        {"thread": ThreadHints(session="visitor", in_reply_to="<m0>")},
        Existing(linked=CLOSED_OF_ANNA, session=state("c1")),
        ANNA,
        ROUTED,
        expected(Action.APPEND, state("c1"), "id-1", (received("c1", "id-1"),)),
    ),
    (
        "without reopen or an open session it starts a new conversation",
        {"thread": ThreadHints(session="visitor", in_reply_to="<m0>")},
        Existing(linked=CLOSED_OF_ANNA),
        ANNA,
        ROUTED,
        expected(
            Action.CREATE,
            created(),
            "id-2",
            (routed("conversation.created", "id-1"), received("id-1", "id-2")),
        ),
    ),
    (
        "a message naming another customer's conversation is refused, noted and kept apart",
        {"thread": ThreadHints(session="visitor", conversation="c-eve")},
        Existing(linked=OPEN_OF_EVE),
        ANNA,
        ROUTED,
        expected(
            Action.CREATE,
            created(),
            "id-2",
            (
                refused("c-eve"),
                routed("conversation.created", "id-1"),
                received("id-1", "id-2"),
            ),
            stored=claim_note(
                envelope(thread=ThreadHints(session="visitor", conversation="c-eve")), "c-eve"
            ),
        ),
    ),
    (
        "a sender whose authentication failed never joins, even their own conversation",
        {"thread": REPLY, "sender_verified": False},
        Existing(linked=CLOSED_OF_ANNA),
        ANNA,
        ROUTED,
        expected(
            Action.CREATE,
            created(),
            "id-2",
            (refused("c-old"), routed("conversation.created", "id-1"), received("id-1", "id-2")),
            stored=claim_note(envelope(thread=REPLY, sender_verified=False), "c-old"),
        ),
    ),
    (
        "a delivery report joins the conversation its token names, whoever sent it",
        {"thread": ThreadHints(conversation="c-eve", delivery_report=True)},
        Existing(linked=OPEN_OF_EVE),
        ANNA,
        ROUTED,
        expected(Action.APPEND, OPEN_OF_EVE, "id-1", (received("c-eve", "id-1"),)),
    ),
    (
        "a delivery report found only by its references is refused",
        {"thread": ThreadHints(in_reply_to="<ours>", delivery_report=True)},
        Existing(linked=OPEN_OF_EVE),
        EVE,
        ROUTED,
        expected(
            Action.CREATE,
            created(thread_key=None, customer_id=EVE),
            "id-2",
            (
                refused("c-eve", EVE),
                routed("conversation.created", "id-1"),
                received("id-1", "id-2"),
            ),
            customer=EVE,
            stored=claim_note(
                envelope(thread=ThreadHints(in_reply_to="<ours>", delivery_report=True)), "c-eve"
            ),
        ),
    ),
    (
        "the rules' auto-reply goes out with a new conversation",
        {},
        Existing(),
        ANNA,
        ANSWERING,
        expected(
            Action.CREATE,
            created(),
            "id-2",
            (
                routed("conversation.created", "id-1"),
                received("id-1", "id-2"),
                Audit(
                    kind="auto_reply.queued",
                    conversation_id="id-1",
                    message_id="id-3",
                    data={"rules": ["vip"]},
                ),
            ),
            decision=ANSWERING,
            auto_reply=AUTO_REPLY,
            extra=(
                (
                    MESSAGES,
                    MessageStored(
                        conversation_id="id-1",
                        message_id="id-3",
                        direction="outbound",
                        status="queued",
                        channel="webchat",
                        text="Thanks, we are on it.",
                        created_at=NOW,
                    ),
                ),
                (OUTBOX, OutboxReady(message_id="id-3")),
            ),
        ),
    ),
    (
        "no auto-reply to a message joining a conversation",
        {},
        Existing(session=state("c1")),
        ANNA,
        ANSWERING,
        expected(Action.APPEND, state("c1"), "id-1", (received("c1", "id-1"),), decision=ANSWERING),
    ),
    (
        "no auto-reply to automated mail: no reply loops",
        {"auto_submitted": True},
        Existing(),
        ANNA,
        ANSWERING,
        expected(
            Action.CREATE,
            created(),
            "id-2",
            (routed("conversation.created", "id-1"), received("id-1", "id-2")),
            decision=ANSWERING,
        ),
    ),
    (
        "attachments get ids in their order and are listed for the console",
        {"attachments": (FILE,)},
        Existing(session=state("c1")),
        ANNA,
        ROUTED,
        expected(
            Action.APPEND,
            state("c1"),
            "id-1",
            (received("c1", "id-1"),),
            attachment_ids=("id-2",),
            attachments=(
                AttachmentListed(
                    id="id-2",
                    name="invoice.pdf",
                    content_type="application/pdf",
                    size=3,
                    sha256="ab",
                ),
            ),
        ),
    ),
]


@pytest.mark.parametrize(
    ("changes", "existing", "customer", "decision", "want"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_plan(
    changes: dict[str, Any],
    existing: Existing,
    customer: str,
    decision: Decision,
    want: Callable[[Envelope], IngestPlan],
) -> None:
    sent = envelope(**changes)
    assert plan(sent, existing, customer, decision, now=NOW, new_id=ids()) == want(sent)


def test_a_refused_message_keeps_the_connectors_notes_on_the_bus() -> None:
    """The claim note is stored with the message; the live frame carries what the connector
    flagged (as before the planner)."""
    sent = envelope(
        thread=ThreadHints(conversation="c-eve"), metadata={"problems": ["no document"]}
    )
    planned = plan(sent, Existing(linked=OPEN_OF_EVE), ANNA, ROUTED, now=NOW, new_id=ids())
    assert planned.envelope.metadata["claims_conversation"] == "c-eve"
    assert len(planned.envelope.metadata["problems"]) == 2
    message = planned.publish[0][1]
    assert isinstance(message, MessageStored) and message.notes == ("no document",)


def test_a_batch_sees_what_its_earlier_messages_did() -> None:
    """Two messages of one new session: one conversation. Two replies to one closed
    conversation: reopened once, the second joins it as reopened."""
    reply = envelope(thread=REPLY)
    plans = plan_batch(
        [
            (envelope(), ANNA, ROUTED),
            (envelope(idempotency_key="k2"), ANNA, ROUTED),
            (reply, ANNA, ROUTED),
            (msgspec.structs.replace(reply, idempotency_key="k4"), ANNA, ROUTED),
        ],
        {2: CLOSED_OF_ANNA, 3: CLOSED_OF_ANNA},
        {},
        now=NOW,
        new_id=ids(),
    )
    assert [(p.action, p.conversation.id) for p in plans] == [
        (Action.CREATE, "id-1"),
        (Action.APPEND, "id-1"),
        (Action.REOPEN, "c-old"),
        (Action.APPEND, "c-old"),
    ]
    assert plans[3].conversation == created("c-old", thread_key=None)
    assert [a.kind for p in plans for a in p.audit] == [
        "conversation.created",
        "message.received",
        "message.received",
        "conversation.reopened",
        "message.received",
        "message.received",
    ]


def test_batch_rows_write_each_table_once_in_the_right_order() -> None:
    plans = plan_batch(
        [
            (envelope(), ANNA, ANSWERING),
            (envelope(idempotency_key="k2", attachments=(FILE,)), ANNA, ANSWERING),
            (envelope(idempotency_key="k3", thread=REPLY), ANNA, ROUTED),
            (envelope(idempotency_key="k4", thread=REPLY), ANNA, ROUTED),
        ],
        {2: CLOSED_OF_ANNA, 3: CLOSED_OF_ANNA},
        {},
        now=NOW,
        new_id=ids(),
    )
    rows = batch_rows(plans, NOW)
    assert [row["id"] for row in rows.conversations] == ["id-1"]
    assert rows.conversations[0]["decision"] == msgspec.to_builtins(ANSWERING)
    assert rows.conversations[0]["rules_digest"] == "r1"
    # inbound in order, then the one auto-reply
    assert [(row["id"], row["direction"]) for row in rows.messages] == [
        ("id-2", "inbound"),
        ("id-4", "inbound"),
        ("id-6", "inbound"),
        ("id-7", "inbound"),
        ("id-3", "outbound"),
    ]
    assert [row["message_id"] for row in rows.outbox] == ["id-3"]
    assert [(row["id"], row["message_id"]) for row in rows.attachments] == [("id-5", "id-4")]
    assert rows.reopened == [{"cid": "c-old", "queue": "billing", "priority": "high", "at": NOW}]
    assert rows.touched == {"id-1": NOW}  # the reopened one moves updated_at itself
    assert {tuple(row) for row in rows.events} == {
        ("at", "kind", "conversation_id", "message_id", "agent", "data")
    }


# -- the customer the rules see ------------------------------------------------------------


def row(customer_id: str, kind: str = "customer", **changes: Any) -> dict[str, Any]:
    """A customer row as ``facts_query`` gives it."""
    fields = {
        "id": customer_id,
        "kind": kind,
        "name": customer_id.title(),
        "external_id": None,
        "abc": "A" if kind == "customer" else None,
        "open_conversations": 0,
        "attributes": None,
    }
    return {**fields, **changes}


def known(customer_id: str, **changes: Any) -> CustomerRef:
    return customer_of(row(customer_id, **changes), NOW)


def arrival(external: Lookup | None = None, **changes: Any) -> Arrival:
    return Arrival(envelope(**changes), external, "prospect-1")


SENDER = ("webchat", "visitor")
STALE_ANNA = msgspec.structs.replace(known("anna").facts or CustomerFacts(), stale=True)
TYPED = Identity(kind="email", address="anna@example.com")

# name, arrival, owners by address, customers by number -> the customer rules see
CUSTOMER_ROWS: list[tuple[str, Arrival, dict[Any, Any], dict[str, Any], CustomerRef]] = [
    (
        "a new address is a prospect, with the id the transaction will give it",
        arrival(),
        {},
        {},
        customer_of(
            {"id": "prospect-1", "kind": "prospect", "name": None, "open_conversations": 0}, NOW
        ),
    ),
    ("a known address is its customer", arrival(), {SENDER: row("anna")}, {}, known("anna")),
    (
        "a vouched sender at a free address is the vouched customer",
        arrival(vouched_customer="K1"),
        {},
        {"K1": row("anna", external_id="K1")},
        known("anna", external_id="K1"),
    ),
    (
        "a vouched sender's prospect is merged in, open conversations too",
        arrival(vouched_customer="K1"),
        {SENDER: row("visitor", "prospect", open_conversations=1)},
        {"K1": row("anna", external_id="K1", open_conversations=2)},
        known("anna", external_id="K1", open_conversations=3),
    ),
    (
        "an address another customer owns stays theirs (a clash)",
        arrival(vouched_customer="K1"),
        {SENDER: row("eve")},
        {"K1": row("anna", external_id="K1")},
        known("eve"),
    ),
    (
        "a known customer's address that failed authentication is a prospect claiming them",
        arrival(sender_verified=False),
        {SENDER: row("anna")},
        {},
        CustomerRef(
            "prospect-1",
            False,
            None,
            CustomerFacts(
                id="prospect-1",
                attributes={
                    "claims": [
                        {
                            "kind": "webchat",
                            "address": "visitor",
                            "customer": "anna",
                            "verified": False,
                        }
                    ]
                },
            ),
        ),
    ),
    (
        "an address typed that someone else owns is a claim, never a link",
        arrival(claimed=(TYPED,)),
        {
            SENDER: row("visitor", "prospect"),
            ("email", "anna@example.com"): row("anna", external_id="K1"),
        },
        {},
        known(
            "visitor",
            kind="prospect",
            attributes={
                "claims": [
                    {
                        "kind": "email",
                        "address": "anna@example.com",
                        "customer": "anna",
                        "customer_number": "K1",
                        "verified": False,
                    }
                ]
            },
        ),
    ),
    (
        "a free address typed becomes theirs: no claim",
        arrival(claimed=(TYPED,)),
        {SENDER: row("visitor", "prospect")},
        {},
        known("visitor", kind="prospect"),
    ),
    (
        "what the external CRM says is laid over the stored facts",
        arrival(Lookup({"tier": "C"})),
        {SENDER: row("anna")},
        {},
        known("anna", tier_override="C"),
    ),
    (
        "a CRM that did not answer in time marks the facts stale",
        arrival(Lookup(None, stale=True)),
        {SENDER: row("anna")},
        {},
        CustomerRef("anna", True, "Anna", STALE_ANNA),
    ),
]


@pytest.mark.parametrize(
    ("incoming", "owners", "vouched", "want"),
    [row_[1:] for row_ in CUSTOMER_ROWS],
    ids=[row_[0] for row_ in CUSTOMER_ROWS],
)
def test_foreseen_customer(
    incoming: Arrival, owners: dict[Any, Any], vouched: dict[str, Any], want: CustomerRef
) -> None:
    assert foreseen([incoming], owners, vouched, NOW) == [want]


def test_foreseen_follows_the_batch() -> None:
    """Two first messages from one new address: one prospect (the first one's id); a vouched
    message moves the address for the ones after it in the batch too."""
    first = Arrival(envelope(), None, "prospect-1")
    second = Arrival(envelope(idempotency_key="k2"), None, "prospect-2")
    assert [c.id for c in foreseen([first, second], {}, {}, NOW)] == ["prospect-1", "prospect-1"]
    vouching = Arrival(envelope(vouched_customer="K1"), None, "prospect-3")
    customers = foreseen([first, vouching], {}, {"K1": row("anna", external_id="K1")}, NOW)
    assert [c.id for c in customers] == ["anna", "anna"]
