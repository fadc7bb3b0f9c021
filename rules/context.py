"""What a rule can see: the message and customer facts, flattened for fast compiled access.

:class:`RuleInput` is also the documented JSON input of ``channelhub rules test``. Unknown
customers have ``known == false`` and empty or zero fields, never missing ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

_WORD = re.compile(r"\w+")


class MessageFacts(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    subject: str = ""
    text: str = ""
    from_: str = msgspec.field(default="", name="from")
    to: list[str] = msgspec.field(default_factory=list)
    language: str = ""
    attachments: list[str] = msgspec.field(default_factory=list)
    received_at: float = 0.0
    is_reply: bool = False
    auto_submitted: bool = False


class CustomerFacts(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    known: bool = False
    id: str = ""
    name: str = ""
    tier: str = ""
    lifetime_value: float = 0.0
    orders_12m: int = 0
    last_order_at: float = 0.0
    days_since_last_order: int = 0
    last_purchase: str = ""
    payment_punctuality: float = 0.0
    overdue_invoices: int = 0
    open_conversations: int = 0
    tags: list[str] = msgspec.field(default_factory=list)
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    stale: bool = False  # an external CRM did not answer in time: fields may be old or empty


class RuleInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``{"channel": …, "inbox": …, "message": {…}, "customer": {…}}`` (see docs/rules.md)."""

    channel: str
    inbox: str = ""
    message: MessageFacts = msgspec.field(default_factory=MessageFacts)
    customer: CustomerFacts = msgspec.field(default_factory=CustomerFacts)


BusinessHours = Callable[[str], bool]


def _closed(_name: str) -> bool:
    return False


class Context:
    """The flat object compiled rules read (``c.customer_tier`` for ``customer.tier``)."""

    __slots__ = (
        "_phrases",
        "_utf8",
        "_words",
        "business_hours",
        "channel",
        "customer_attributes",
        "customer_days_since_last_order",
        "customer_id",
        "customer_known",
        "customer_last_order_at",
        "customer_last_purchase",
        "customer_lifetime_value",
        "customer_name",
        "customer_open_conversations",
        "customer_orders_12m",
        "customer_overdue_invoices",
        "customer_payment_punctuality",
        "customer_stale",
        "customer_tags",
        "customer_tier",
        "inbox",
        "message_attachments",
        "message_auto_submitted",
        "message_from",
        "message_has_attachments",
        "message_is_reply",
        "message_language",
        "message_received_at",
        "message_subject",
        "message_text",
        "message_to",
        "now_day",
        "now_hour",
        "now_minute",
        "now_month",
        "now_weekday",
        "now_year",
    )

    def __init__(
        self, facts: RuleInput, now: datetime, business_hours: BusinessHours = _closed
    ) -> None:
        message, customer = facts.message, facts.customer
        self.channel = facts.channel
        self.inbox = facts.inbox
        self.message_subject = message.subject
        self.message_text = message.text
        self.message_from = message.from_
        self.message_to = message.to
        self.message_language = message.language
        self.message_attachments = message.attachments
        self.message_has_attachments = bool(message.attachments)
        self.message_received_at = message.received_at
        self.message_is_reply = message.is_reply
        self.message_auto_submitted = message.auto_submitted
        self.customer_known = customer.known
        self.customer_id = customer.id
        self.customer_name = customer.name
        self.customer_tier = customer.tier
        self.customer_lifetime_value = customer.lifetime_value
        self.customer_orders_12m = customer.orders_12m
        self.customer_last_order_at = customer.last_order_at
        self.customer_days_since_last_order = customer.days_since_last_order
        self.customer_last_purchase = customer.last_purchase
        self.customer_payment_punctuality = customer.payment_punctuality
        self.customer_overdue_invoices = customer.overdue_invoices
        self.customer_open_conversations = customer.open_conversations
        self.customer_stale = customer.stale
        self.customer_tags = customer.tags
        self.customer_attributes = customer.attributes
        self.now_hour = now.hour
        self.now_minute = now.minute
        self.now_weekday = now.weekday()
        self.now_day = now.day
        self.now_month = now.month
        self.now_year = now.year
        self.business_hours = business_hours
        self._words: dict[str, frozenset[str]] = {}
        self._phrases: dict[str, str] = {}
        self._utf8: dict[str, bytes] = {}

    def words(self, text: str) -> frozenset[str]:
        """The case-folded words of ``text``, computed once per text per evaluation."""
        found = self._words.get(text)
        if found is None:
            found = self._words[text] = frozenset(_WORD.findall(text.casefold()))
        return found

    def utf8(self, text: Any) -> bytes | None:
        """``text`` as UTF-8 for the regex engine, encoded once per evaluation."""
        if text is None:
            return None
        data = self._utf8.get(text)
        if data is None:
            data = self._utf8[text] = text.encode()
        return data

    def contains_any(self, text: Any, words: tuple[frozenset[str], tuple[str, ...]]) -> bool:
        """Case-insensitive whole-word (or whole-phrase) match of any of ``words``."""
        if not text:
            return False
        singles, phrases = words
        if not singles.isdisjoint(self.words(text)):
            return True
        if phrases:
            joined = self._phrases.get(text)
            if joined is None:
                joined = self._phrases[text] = f" {' '.join(_WORD.findall(text.casefold()))} "
            return any(f" {phrase} " in joined for phrase in phrases)
        return False
