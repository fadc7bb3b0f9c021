"""What the rules saw of one inbound message, recorded at ingest so a rules change can be replayed
against real traffic later (``channelhub rules diff``, docs/rules.md).

A routing record holds the envelope fields rules read (but the text and subject, which the
``messages`` row holds already), the customer's facts *as they were* when the message arrived,
the moment the rules decided (for ``now.*`` and business hours), whether the message started a
conversation (only then can an auto-reply go out) and the decision with its rules revision.

Encoded as positional MessagePack (msgspec ``array_like``): a record is a few dozen bytes plus
its strings, and decoding 100,000 of them takes a fraction of the time replaying them does.
The structs below are array-like subclasses of the engine's own types, so a decoded customer *is*
a :class:`~rules.context.CustomerFacts` and a decoded decision a :class:`~rules.decision.Decision`.
A field added to either is appended to the encoding; records written before decode with the
field's default (positional decoding fills missing trailing fields from defaults).

Pure: no I/O. Records hold personal data: the privacy code exports, erases and expires them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hub.customers.context import CustomerRef
from hub.envelope import Envelope
from rules.context import CustomerFacts
from rules.decision import Decision

#: the encoding's version, the first element of every record
VERSION = 1


# Records are read by the hundred thousand and never form reference cycles: untracked by the
# cyclic garbage collector (``gc=False``), which otherwise rescans them over and over while a
# replay allocates (a quarter of the decoding time, more on a large heap).


class SeenCustomer(CustomerFacts, array_like=True, gc=False):
    """:class:`CustomerFacts`, stored by position."""


class SeenDecision(Decision, frozen=True, array_like=True, gc=False):
    """:class:`Decision`, stored by position."""


class RoutingRecord(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What the rules read of a message besides its text and subject, and what they decided."""

    version: int
    decided_at: float  # the moment of the decision: ``now.*`` and business hours replay at it
    sender: str
    to: list[str]
    language: str
    attachments: list[str]
    received_at: float
    is_reply: bool
    auto_submitted: bool
    created: bool  # the message started a conversation: only then may an auto-reply go out
    customer: SeenCustomer
    decision: SeenDecision


# attributes come from CRM data: a value MessagePack has no type for is kept as its text
_encoder = msgspec.msgpack.Encoder(enc_hook=str)
_decoder = msgspec.msgpack.Decoder(RoutingRecord)


def seen_customer(customer: CustomerRef) -> CustomerFacts:
    """The facts the rules read of ``customer`` (as ``hub.routing`` hands them to the rules)."""
    return customer.facts or CustomerFacts(
        known=customer.known, id=customer.id, name=customer.name or ""
    )


def _as(kind: type[Any], value: msgspec.Struct) -> Any:
    """``value`` (a CustomerFacts or Decision) as its array-like subclass ``kind``."""
    if type(value) is kind:
        return value
    return kind(**{name: getattr(value, name) for name in value.__struct_fields__})


def record_of(
    envelope: Envelope,
    customer: CustomerFacts,
    decision: Decision,
    *,
    decided_at: float,
    created: bool,
) -> RoutingRecord:
    """The record of one message the rules decided on at ``decided_at``."""
    thread = envelope.thread
    return RoutingRecord(
        VERSION,
        decided_at,
        envelope.sender.address,
        [recipient.address for recipient in envelope.recipients],
        envelope.language or "",
        [attachment.name for attachment in envelope.attachments],
        envelope.received_at,
        bool(thread.in_reply_to or thread.references),
        envelope.auto_submitted,
        created,
        _as(SeenCustomer, customer),
        _as(SeenDecision, decision),
    )


def encoded(
    envelope: Envelope,
    customer: CustomerFacts,
    decision: Decision,
    *,
    decided_at: float,
    created: bool,
) -> bytes:
    """``encode(record_of(...))`` without building the record: ingest's per-message path
    (a third of the time; the same bytes, tests/test_rules_diff.py)."""
    thread = envelope.thread
    astuple = msgspec.structs.astuple
    try:
        return _encoder.encode(
            (
                VERSION,
                decided_at,
                envelope.sender.address,
                [recipient.address for recipient in envelope.recipients],
                envelope.language or "",
                [attachment.name for attachment in envelope.attachments],
                envelope.received_at,
                bool(thread.in_reply_to or thread.references),
                envelope.auto_submitted,
                created,
                astuple(customer),
                astuple(decision),
            )
        )
    except (OverflowError, TypeError, ValueError, msgspec.EncodeError):
        record = record_of(envelope, customer, decision, decided_at=decided_at, created=created)
        return encode(record)


def encode(record: RoutingRecord) -> bytes:
    """The stored form. Never fails for the data ingest has (a record must not keep a message
    from being stored): attributes that cannot be encoded even as text are left out."""
    try:
        return _encoder.encode(record)
    except (OverflowError, TypeError, ValueError, msgspec.EncodeError):
        customer = msgspec.structs.replace(record.customer, attributes={"unrecorded": True})
        return _encoder.encode(msgspec.structs.replace(record, customer=customer))


def decode(data: bytes) -> RoutingRecord:
    """A stored record; ``msgspec.DecodeError`` for bytes that are not one."""
    return _decoder.decode(data)


def readable(record: RoutingRecord) -> dict[str, Any]:
    """The record as plain JSON-ready data with field names (exports, examples)."""
    shown: dict[str, Any] = {
        name: getattr(record, name) for name in record.__struct_fields__ if name != "version"
    }
    shown["customer"] = msgspec.to_builtins(
        {name: getattr(record.customer, name) for name in CustomerFacts.__struct_fields__}
    )
    shown["decision"] = msgspec.to_builtins(
        {name: getattr(record.decision, name) for name in Decision.__struct_fields__}
    )
    return shown
