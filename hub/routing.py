"""The rules hook of the pipeline: envelope + customer -> facts -> the current rules -> Decision."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec

from hub.calendar import is_open
from hub.customers.context import CustomerRef
from hub.envelope import Envelope
from hub.settings import BusinessHoursSettings
from rules.context import Context, CustomerFacts, MessageFacts, RuleInput
from rules.decision import Decision
from rules.evaluate import evaluate
from rules.reload import RulesHolder

log = logging.getLogger(__name__)


def facts_for(envelope: Envelope, customer: CustomerRef) -> RuleInput:
    """What rules see of a message and its customer (full CRM context comes later)."""
    return RuleInput(
        channel=envelope.channel,
        inbox=envelope.inbox,
        message=MessageFacts(
            subject=envelope.subject or "",
            text=envelope.text,
            from_=envelope.sender.address,
            to=[recipient.address for recipient in envelope.recipients],
            language=envelope.language or "",
            attachments=[attachment.name for attachment in envelope.attachments],
            received_at=envelope.received_at,
            is_reply=bool(envelope.thread.in_reply_to or envelope.thread.references),
            auto_submitted=envelope.auto_submitted,
        ),
        customer=customer.facts
        or CustomerFacts(known=customer.known, id=customer.id, name=customer.name or ""),
    )


class RulesDecider:
    """Evaluates the holder's current rules; never raises (errors are logged by ``evaluate``)."""

    def __init__(
        self,
        holder: RulesHolder,
        *,
        timezone: str,
        calendars: Mapping[str, BusinessHoursSettings],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.holder = holder
        self.zone = ZoneInfo(timezone)
        self.timezone = timezone
        self.calendars = calendars
        self.clock = clock

    def context(self, facts: RuleInput, now: datetime | None = None) -> Context:
        moment = now or datetime.fromtimestamp(self.clock(), self.zone)

        def business_hours(name: str) -> bool:
            calendar = self.calendars.get(name)
            return calendar is not None and is_open(calendar, moment, self.timezone)

        return Context(facts, moment.astimezone(self.zone), business_hours)

    def __call__(self, envelope: Envelope, customer: CustomerRef) -> Decision:
        outcome = evaluate(self.holder.current, self.context(facts_for(envelope, customer)))
        return outcome.decision


class ClosedQueueReplies:
    """Adds a queue's ``closed_reply`` to decisions sending new work to a closed queue (when
    the rules chose no auto-reply of their own). Wraps any decider."""

    def __init__(
        self,
        inner: Callable[[Envelope, CustomerRef], Decision],
        *,
        replies: Mapping[str, tuple[BusinessHoursSettings, str]],
        timezone: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.replies = replies
        self.timezone = timezone
        self.clock = clock

    def __call__(self, envelope: Envelope, customer: CustomerRef) -> Decision:
        decision = self.inner(envelope, customer)
        closed = self.replies.get(decision.queue)
        if closed is None or decision.auto_reply is not None:
            return decision
        calendar, text = closed
        moment = datetime.fromtimestamp(self.clock(), ZoneInfo(self.timezone))
        if is_open(calendar, moment, self.timezone):
            return decision
        return msgspec.structs.replace(decision, auto_reply=text)
