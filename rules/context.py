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
# a calendar name and the moment of evaluation -> is it open?
OpenAt = Callable[[str, datetime], bool]

# ASCII bytes that are not word characters become spaces; bytes of multi-byte UTF-8 sequences
# (0x80 and above) are left alone
_SEPARATORS = bytes(
    byte if byte >= 0x80 or chr(byte).isalnum() or byte == 0x5F else 0x20 for byte in range(256)
)


def tokens(text: str) -> list[str]:
    """The case-folded ``\\w+`` words of ``text`` in order, as ``re.findall(r"\\w+", ...)``.

    Split on ASCII separators and white space with C string methods, then one check that
    everything left is a word character; only when it is not (non-ASCII punctuation, symbols)
    does the regular expression run. Both give the same list (tests/test_rules_engine.py).
    """
    if text.isascii():  # casefold is lower here (and lower has a fast path for ASCII), and
        # every separator was turned into a space: exact as it stands
        return text.lower().encode().translate(_SEPARATORS).decode().split()
    folded = text.casefold()
    found = (
        folded.encode("utf-8", "surrogatepass")
        .translate(_SEPARATORS)
        .decode("utf-8", "surrogatepass")
        .split()
    )
    joined = "".join(found)
    if not joined or joined.isalnum() or joined.replace("_", "a").isalnum():
        return found
    return _WORD.findall(folded)


def _closed(_name: str) -> bool:
    return False


class Context:
    """The flat object compiled rules read (``c.inbox``, ``c.message_text``, ``c.customer.tier``).

    Built once per message, before evaluation, with :meth:`of` or :meth:`of_input`. What only
    some rules need is computed on first use and kept for the rest of the evaluation: the
    clock fields, business hours, the words of a text, its UTF-8 bytes.
    """

    __slots__ = (
        "_hours",
        "_moment",
        "_open",
        "_phrases",
        "_tokens",
        "_utf8",
        "_when",
        "_words",
        "channel",
        "customer",
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
    )

    channel: str
    customer: CustomerFacts
    inbox: str
    message_attachments: list[str]
    message_auto_submitted: bool
    message_from: str
    message_has_attachments: bool
    message_is_reply: bool
    message_language: str
    message_received_at: float
    message_subject: str
    message_text: str
    message_to: list[str]
    _when: Callable[[], datetime]
    _open: OpenAt
    _moment: datetime | None
    _hours: dict[str, bool] | None
    _tokens: dict[str, list[str]]
    _words: dict[str, frozenset[str]] | None
    _phrases: dict[str, str] | None
    _utf8: dict[str, bytes]

    @classmethod
    def of(
        cls,
        *,
        channel: str,
        inbox: str,
        subject: str,
        text: str,
        sender: str,
        to: list[str],
        language: str,
        attachments: list[str],
        received_at: float,
        is_reply: bool,
        auto_submitted: bool,
        customer: CustomerFacts,
        clock: Callable[[], datetime],
        business_hours: OpenAt,
    ) -> Context:
        """``clock`` is only called if a rule reads the time; ``business_hours`` gets a calendar
        name and that time. (A class method rather than ``__init__``: calling a class with
        keywords builds a dict of them on every call, calling a method does not.)"""
        self = cls.__new__(cls)
        self.channel = channel
        self.inbox = inbox
        self.message_subject = subject
        self.message_text = text
        self.message_from = sender
        self.message_to = to
        self.message_language = language
        self.message_attachments = attachments
        self.message_has_attachments = bool(attachments)
        self.message_received_at = received_at
        self.message_is_reply = is_reply
        self.message_auto_submitted = auto_submitted
        self.customer = customer
        self._when = clock
        self._open = business_hours
        self._moment = None
        self._hours = None
        self._tokens = {}
        self._words = None
        self._phrases = None
        self._utf8 = {}
        return self

    @classmethod
    def of_input(
        cls, facts: RuleInput, now: datetime, business_hours: BusinessHours = _closed
    ) -> Context:
        """The context of a ``channelhub rules test`` input at ``now``."""
        message = facts.message
        return cls.of(
            channel=facts.channel,
            inbox=facts.inbox,
            subject=message.subject,
            text=message.text,
            sender=message.from_,
            to=message.to,
            language=message.language,
            attachments=message.attachments,
            received_at=message.received_at,
            is_reply=message.is_reply,
            auto_submitted=message.auto_submitted,
            customer=facts.customer,
            clock=lambda: now,
            business_hours=lambda name, _moment: business_hours(name),
        )

    def moment(self) -> datetime:
        """The time of this evaluation (read once)."""
        moment = self._moment
        if moment is None:
            moment = self._moment = self._when()
        return moment

    @property
    def now_hour(self) -> int:
        return self.moment().hour

    @property
    def now_minute(self) -> int:
        return self.moment().minute

    @property
    def now_weekday(self) -> int:
        return self.moment().weekday()

    @property
    def now_day(self) -> int:
        return self.moment().day

    @property
    def now_month(self) -> int:
        return self.moment().month

    @property
    def now_year(self) -> int:
        return self.moment().year

    def business_hours(self, name: str) -> bool:
        """Whether the calendar ``name`` is open now; asked once per calendar per message."""
        hours = self._hours
        if hours is None:
            hours = self._hours = {}
        found = hours.get(name)
        if found is None:
            found = hours[name] = bool(self._open(name, self.moment()))
        return found

    def tokens(self, text: str) -> list[str]:
        """The case-folded words of ``text`` in order, computed once per text per evaluation."""
        found = self._tokens.get(text)
        if found is None:
            found = self._tokens[text] = tokens(text)
        return found

    def words(self, text: str) -> frozenset[str]:
        """The set of :meth:`tokens`, computed once per text per evaluation."""
        cache = self._words
        if cache is None:
            cache = self._words = {}
        found = cache.get(text)
        if found is None:
            found = cache[text] = frozenset(self.tokens(text))
        return found

    def utf8(self, text: Any) -> bytes | None:
        """``text`` as UTF-8 for the regex engine, encoded once per evaluation.

        A lone surrogate (undecodable input kept by a connector) is passed through as bytes
        RE2 will not match as a character, rather than failing the rule.
        """
        if text is None:
            return None
        data = self._utf8.get(text)
        if data is None:
            data = self._utf8[text] = text.encode("utf-8", "surrogatepass")
        return data

    def contains_any(self, text: Any, words: tuple[frozenset[str], tuple[str, ...]]) -> bool:
        """Case-insensitive whole-word (or whole-phrase) match of any of ``words``."""
        if not text:
            return False
        singles, phrases = words
        if not singles.isdisjoint(self.words(text)):
            return True
        if phrases:
            cache = self._phrases
            if cache is None:
                cache = self._phrases = {}
            joined = cache.get(text)
            if joined is None:
                joined = cache[text] = f" {' '.join(self.tokens(text))} "
            return any(f" {phrase} " in joined for phrase in phrases)
        return False
