"""The rules hook of the pipeline: envelope + customer -> facts -> the current rules -> Decision."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from operator import attrgetter
from zoneinfo import ZoneInfo

import msgspec

from hub.calendar import is_open
from hub.customers.context import CustomerRef
from hub.envelope import Envelope
from hub.settings import BusinessHoursSettings
from rules.context import Context, CustomerFacts, MessageFacts, RuleInput
from rules.decision import Decision
from rules.evaluate import decide
from rules.reload import RulesHolder

log = logging.getLogger(__name__)

_address = attrgetter("address")
_name = attrgetter("name")


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
        self.zones: dict[str, ZoneInfo] = {}
        self.last_open: dict[str, tuple[tuple[int, int, int, int, int], bool]] = {}

    def context(self, facts: RuleInput, now: datetime | None = None) -> Context:
        """The context of a ``rules test`` input (now, unless ``now`` is given)."""
        moment = now or datetime.fromtimestamp(self.clock(), self.zone)
        return Context.of_input(
            facts,
            moment.astimezone(self.zone),
            lambda name: self.business_hours(name, moment),
        )

    def business_hours(self, name: str, moment: datetime) -> bool:
        """Whether calendar ``name`` is open at ``moment``. The answer only depends on the
        calendar's local date, hour and minute, so the last one is kept per calendar."""
        calendar = self.calendars.get(name)
        if calendar is None:
            return False
        zone = self.zones.get(name)
        if zone is None:
            zone = self.zones[name] = ZoneInfo(calendar.timezone or self.timezone)
        local = moment.astimezone(zone)
        minute = (local.year, local.month, local.day, local.hour, local.minute)
        last = self.last_open.get(name)
        if last is not None and last[0] == minute:
            return last[1]
        found = is_open(calendar, moment, self.timezone)
        self.last_open[name] = (minute, found)
        return found

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), self.zone)

    def prepare(self, envelope: Envelope, customer: CustomerRef) -> Context:
        """What the rules read of one message, the per-message work before evaluation: the
        same as ``context(facts_for(envelope, customer))``, without the copies in between
        (the clock is only read if a rule asks for the time)."""
        thread = envelope.thread
        return Context.of(
            channel=envelope.channel,
            inbox=envelope.inbox,
            subject=envelope.subject or "",
            text=envelope.text,
            sender=envelope.sender.address,
            to=list(map(_address, envelope.recipients)),
            language=envelope.language or "",
            attachments=list(map(_name, envelope.attachments)),
            received_at=envelope.received_at,
            is_reply=bool(thread.in_reply_to or thread.references),
            auto_submitted=envelope.auto_submitted,
            customer=customer.facts
            or CustomerFacts(known=customer.known, id=customer.id, name=customer.name or ""),
            clock=self.now,
            business_hours=self.business_hours,
        )

    def __call__(self, envelope: Envelope, customer: CustomerRef) -> Decision:
        return decide(self.holder.current, self.prepare(envelope, customer))


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
