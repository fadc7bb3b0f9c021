"""Replaying stored messages through two rule sets: what a rules change would do to real traffic.

Pure: :class:`Replay` takes :class:`Replayable` messages (what the rules saw of each, read by
``hub.replay.load``) and, at the end, hands out a typed :class:`Summary`. Each message is
evaluated by both rule sets on one shared context (the words of a text are split once for
both), and only *which rules fired* on each side is tallied: a decision is a function of the
rules that fired, so everything else (queue moves, priority and SLA changes, rules newly firing
or stopping, instructions, auto-replies) is worked out once per distinct pair at the end, and
traces only for the few examples shown.

Two shortcuts keep a replay near the engine's own speed, neither changing a result:

- A message recorded under the revision compared with is not evaluated by it again: its
  recorded decision is that revision's decision (a queue's ``closed_reply`` laid over it, which
  is hub.yaml's and not the rules', is taken off again).
- Rules read the time to the minute (``now.minute`` is the finest field, calendars open and
  close on whole minutes), so messages of one minute share one clock reading and one
  business-hours answer per calendar.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from rules.compiler import RuleSet
from rules.context import Context, CustomerFacts, OpenAt
from rules.decision import Decision
from rules.evaluate import decide, matched_trace

EXCERPT = 160
MAX_EXAMPLES = 60  # example messages in one summary, whatever the number of changes


class Replayable(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One stored inbound message as the rules saw it when it arrived (never in a reference
    cycle: untracked by the garbage collector, see ``hub.ingest.record``)."""

    message_id: str
    conversation_id: str
    channel: str
    inbox: str
    subject: str
    text: str
    sender: str
    to: list[str]
    language: str
    attachments: list[str]
    received_at: float
    is_reply: bool
    auto_submitted: bool
    customer: CustomerFacts
    moment: float  # when the rules decided: ``now.*`` and business hours replay at it
    created: bool  # it started a conversation: an auto-reply would have gone out
    recorded: Decision | None  # the decision stored with it; None: stored before recording
    has_context: bool  # False: only the envelope is known (customer facts empty)


class Example(msgspec.Struct, frozen=True, kw_only=True):
    """A message shown for a change, with both decisions and the rules that mattered."""

    message_id: str
    conversation_id: str
    channel: str
    inbox: str
    received_at: float
    subject: str
    excerpt: str
    has_context: bool
    recorded: Decision | None
    old: Decision
    new: Decision
    # the trace entries of the rules that matched or failed on each side (docs/rules.md)
    old_trace: list[dict[str, Any]]
    new_trace: list[dict[str, Any]]


class Move(msgspec.Struct, frozen=True, kw_only=True):
    old_queue: str
    new_queue: str
    messages: int
    examples: list[str] = []  # message ids (Summary.examples); only for changed queues


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """A field's old and new value (priority names, SLA seconds or None) and how often."""

    old: str | int | None
    new: str | int | None
    messages: int
    examples: list[str] = []


class Counted(msgspec.Struct, frozen=True, kw_only=True):
    """A rule, an instruction or an auto-reply text, and on how many messages it changed."""

    name: str
    messages: int
    examples: list[str] = []


class AutoReplies(msgspec.Struct, frozen=True, kw_only=True):
    """Auto-replies that would have been sent (new conversations, never to automated mail)."""

    old: int  # sent under the current rules
    new: int  # sent under the proposed rules
    gained: list[Counted] = []  # by text: sent under the proposed rules only
    lost: list[Counted] = []  # by text: sent under the current rules only
    changed: int = 0  # sent under both, with another text


class RuleErrors(msgspec.Struct, frozen=True, kw_only=True):
    side: str  # "old" or "new"
    rule: str
    messages: int
    error: str  # the first one seen


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """What replaying the messages of a period through the proposed rules changes."""

    against: str  # sha256 of the rules compared with (the running or a stored revision)
    proposed: str  # sha256 of the proposed rules
    messages: int
    without_context: int  # stored before recording: replayed with the envelope only
    changed: int  # messages whose decision differs in any way
    queues: list[Move]  # every (old queue -> new queue), most messages first
    priorities: list[Change]
    slas: list[Change]
    newly_firing: list[Counted]  # rules firing on messages they did not fire on before
    stopped_firing: list[Counted]  # rules no longer firing on messages they fired on
    never_firing: list[str]  # enabled rules of the proposed file firing on no message
    instructions_added: list[Counted]
    instructions_lost: list[Counted]
    auto_replies: AutoReplies
    errors: list[RuleErrors]
    recorded_revisions: dict[str, int]  # revision that routed the messages -> messages
    examples: dict[str, Example]  # by message id


class _Pair:
    """Messages on which the two rule sets fired the same rules (so decided the same)."""

    __slots__ = ("count", "new", "old", "samples")

    def __init__(self, old: Decision, new: Decision) -> None:
        self.old = old
        self.new = new
        self.count = 0
        self.samples: list[tuple[int, Replayable]] = []  # (position in the replay, message)


_Key = tuple[tuple[str, ...], tuple[str, ...], bool]
_Samples = list[tuple[int, Replayable]]


class _Minute:
    """One minute of replayed time: its clock reading and business hours, asked once."""

    __slots__ = ("at", "hours", "moment", "open_at")

    def __init__(self, minute: int, zone: ZoneInfo, open_at: OpenAt) -> None:
        self.at = minute
        self.moment = datetime.fromtimestamp(minute * 60, zone)
        self.open_at = open_at
        self.hours: dict[str, bool] = {}

    def clock(self) -> datetime:
        return self.moment

    def business_hours(self, name: str, _moment: datetime) -> bool:
        found = self.hours.get(name)
        if found is None:
            found = self.hours[name] = bool(self.open_at(name, self.moment))
        return found


def _replay_context(item: Replayable, minute: _Minute) -> Context:
    return Context.of(
        channel=item.channel,
        inbox=item.inbox,
        subject=item.subject,
        text=item.text,
        sender=item.sender,
        to=item.to,
        language=item.language,
        attachments=item.attachments,
        received_at=item.received_at,
        is_reply=item.is_reply,
        auto_submitted=item.auto_submitted,
        customer=item.customer,
        clock=minute.clock,
        business_hours=minute.business_hours,
    )


def context_of(item: Replayable, zone: ZoneInfo, open_at: OpenAt) -> Context:
    """The rules' view of a replayed message, at the moment it was decided."""
    return Context.of(
        channel=item.channel,
        inbox=item.inbox,
        subject=item.subject,
        text=item.text,
        sender=item.sender,
        to=item.to,
        language=item.language,
        attachments=item.attachments,
        received_at=item.received_at,
        is_reply=item.is_reply,
        auto_submitted=item.auto_submitted,
        customer=item.customer,
        clock=partial(datetime.fromtimestamp, item.moment, zone),
        business_hours=open_at,
    )


class Replay:
    """Feed it messages (:meth:`add`), then ask for the :meth:`summary`."""

    def __init__(
        self,
        old: RuleSet,
        new: RuleSet,
        *,
        zone: ZoneInfo,
        open_at: OpenAt,
        examples: int = 3,
    ) -> None:
        self.old = old
        self.new = new
        self.zone = zone
        self.open_at = open_at
        self.examples = examples
        self.pairs: dict[_Key, _Pair] = {}
        self.messages = 0
        self.without_context = 0
        self.revisions: Counter[str] = Counter()
        self.errors: dict[tuple[str, str], list[Any]] = {}
        # the auto-reply each rule of ``old`` sends: the rules' own part of a recorded decision
        self.replies = {rule.name: rule.auto_reply_text for rule in old.rules}
        self.minute = _Minute(0, zone, open_at)

    def add(self, items: Iterable[Replayable]) -> None:
        """Replay ``items`` through both rule sets."""
        old, new, zone, open_at = self.old, self.new, self.zone, self.open_at
        same = old.digest == new.digest
        pairs = self.pairs
        wanted = self.examples
        errors: list[tuple[str, str]] = []
        minute = self.minute
        for item in items:
            at = int(item.moment // 60)
            if minute.at != at:
                minute = self.minute = _Minute(at, zone, open_at)
            context = _replay_context(item, minute)
            recorded = item.recorded
            if recorded is not None and recorded.revision == old.digest:
                before = recorded
                if recorded.auto_reply is not None:
                    before = self._rules_only(recorded)
            else:
                before = decide(old, context, errors)
                if errors:
                    self._errors("old", errors)
            after = before if same else decide(new, context, errors)
            if errors:
                self._errors("new", errors)
            key = (before.rules, after.rules, item.created and not item.auto_submitted)
            pair = pairs.get(key)
            if pair is None:
                pair = pairs[key] = _Pair(before, after)
            pair.count += 1
            if len(pair.samples) < wanted:
                pair.samples.append((self.messages, item))
            if item.has_context:
                recorded = item.recorded
                if recorded is not None and recorded.revision:
                    self.revisions[recorded.revision] += 1
            else:
                self.without_context += 1
            self.messages += 1

    def _rules_only(self, recorded: Decision) -> Decision:
        """``recorded`` without an auto-reply the rules did not choose (a closed queue's)."""
        replies = self.replies
        chosen = next(filter(None, (replies.get(name) for name in recorded.rules)), None)
        if chosen == recorded.auto_reply:
            return recorded
        return msgspec.structs.replace(recorded, auto_reply=chosen)

    def _errors(self, side: str, errors: list[tuple[str, str]]) -> None:
        for rule, error in errors:
            entry = self.errors.get((side, rule))
            if entry is None:
                self.errors[(side, rule)] = [1, error]
            else:
                entry[0] += 1
        errors.clear()

    def summary(self) -> Summary:
        """What the messages added so far change (see :class:`Summary`)."""
        shown = _Shown(self.examples)
        tally = _Tally()
        for (_, _, sends), pair in sorted(self.pairs.items(), key=lambda kv: -kv[1].count):
            tally.add(pair.old, pair.new, pair.count, pair.samples, sends, shown)
        queues, priorities, slas = tally.queues, tally.priorities, tally.slas
        newly, stopped, fired_new = tally.newly, tally.stopped, tally.fired_new
        added, lost = tally.added, tally.lost
        gained_replies, lost_replies = tally.gained_replies, tally.lost_replies
        changed = tally.changed
        replies_old, replies_new, replies_changed = (
            tally.replies_old,
            tally.replies_new,
            tally.replies_changed,
        )
        enabled = {self.new.rules[position].name for position in self.new.enabled}
        return Summary(
            against=self.old.digest,
            proposed=self.new.digest,
            messages=self.messages,
            without_context=self.without_context,
            changed=changed,
            queues=[
                Move(
                    old_queue=old,
                    new_queue=new,
                    messages=count,
                    examples=shown.ids(("queue", old, new)),
                )
                for (old, new), count in _ranked(queues)
            ],
            priorities=[
                Change(old=o, new=n, messages=c, examples=shown.ids(("priority", o, n)))
                for (o, n), c in _ranked(priorities)
            ],
            slas=[
                Change(old=o, new=n, messages=c, examples=shown.ids(("sla", o, n)))
                for (o, n), c in _ranked(slas)
            ],
            newly_firing=_counted(newly, shown, "newly"),
            stopped_firing=_counted(stopped, shown, "stopped"),
            never_firing=[
                rule.name
                for rule in self.new.rules
                if rule.name in enabled and not fired_new[rule.name]
            ],
            instructions_added=_counted(added, shown, "added"),
            instructions_lost=_counted(lost, shown, "lost"),
            auto_replies=AutoReplies(
                old=replies_old,
                new=replies_new,
                gained=_counted(gained_replies, shown, "reply+"),
                lost=_counted(lost_replies, shown, "reply-"),
                changed=replies_changed,
            ),
            errors=[
                RuleErrors(side=side, rule=rule, messages=entry[0], error=entry[1])
                for (side, rule), entry in sorted(self.errors.items())
            ],
            recorded_revisions=dict(self.revisions.most_common()),
            examples={item.message_id: self.example(item) for item in shown.items()},
        )

    def example(self, item: Replayable) -> Example:
        """``item`` with both decisions and the trace entries of the rules that mattered."""
        context = context_of(item, self.zone, self.open_at)
        traces = []
        for ruleset in (self.old, self.new):
            errors: list[tuple[str, str]] = []
            decision = decide(ruleset, context, errors)
            trace = matched_trace(ruleset, decision.rules)
            trace += [{"rule": rule, "result": "error", "error": error} for rule, error in errors]
            traces.append((decision, trace))
        (before, old_trace), (after, new_trace) = traces
        excerpt = " ".join(item.text.split())
        return Example(
            message_id=item.message_id,
            conversation_id=item.conversation_id,
            channel=item.channel,
            inbox=item.inbox,
            received_at=item.received_at,
            subject=item.subject,
            excerpt=excerpt[:EXCERPT] + ("…" if len(excerpt) > EXCERPT else ""),
            has_context=item.has_context,
            recorded=_plain(item.recorded),
            old=before,
            new=after,
            old_trace=old_trace,
            new_trace=new_trace,
        )


class _Shown:
    """The first ``limit`` messages (in replay order) of each change, as its examples; at most
    :data:`MAX_EXAMPLES` messages in all, given to the changes in the order the summary lists
    them (queues first, the biggest first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.by_change: dict[tuple[Any, ...], list[tuple[int, Replayable]]] = {}
        self.shown: dict[str, tuple[int, Replayable]] = {}

    def add(self, change: tuple[Any, ...], samples: list[tuple[int, Replayable]]) -> None:
        chosen = self.by_change.setdefault(change, [])
        chosen += samples
        if len(chosen) > self.limit:
            chosen.sort(key=lambda sample: sample[0])
            del chosen[self.limit :]

    def ids(self, change: tuple[Any, ...]) -> list[str]:
        """The examples of ``change``, as far as the budget of examples goes."""
        found = []
        for position, item in sorted(self.by_change.get(change, ()), key=lambda s: s[0]):
            if item.message_id not in self.shown:
                if len(self.shown) >= MAX_EXAMPLES:
                    continue
                self.shown[item.message_id] = (position, item)
            found.append(item.message_id)
        return found

    def items(self) -> list[Replayable]:
        """Every message an :meth:`ids` answer named, in replay order."""
        return [item for _, item in sorted(self.shown.values(), key=lambda s: s[0])]


def _plain(decision: Decision | None) -> Decision | None:
    """A decoded (positional) decision as a plain one, which encodes with field names."""
    if decision is None or type(decision) is Decision:
        return decision
    return Decision(**{name: getattr(decision, name) for name in Decision.__struct_fields__})


def _missing(these: tuple[str, ...], those: tuple[str, ...]) -> list[str]:
    """The entries of ``these`` that ``those`` lacks, once each, in order."""
    if these == those:
        return []
    lacking = set(those)
    return list(dict.fromkeys(entry for entry in these if entry not in lacking))


def _differs(old: Decision, new: Decision, sends: bool) -> bool:
    """Whether the message would be handled differently (rules of one name may differ too)."""
    return (
        old.queue != new.queue
        or old.priority != new.priority
        or old.sla_seconds != new.sla_seconds
        or old.skills != new.skills
        or old.agent != new.agent
        or old.instructions != new.instructions
        or old.tags != new.tags
        or (sends and old.auto_reply != new.auto_reply)
    )


def _ranked(counter: Counter[Any]) -> list[tuple[Any, int]]:
    """Most messages first; ties in a stable order of the keys' text."""
    return sorted(counter.items(), key=lambda kv: (-kv[1], repr(kv[0])))


def _counted(counter: Counter[str], shown: _Shown, kind: str) -> list[Counted]:
    return [
        Counted(name=name, messages=count, examples=shown.ids((kind, name)))
        for name, count in _ranked(counter)
    ]


def replay(
    items: Iterable[Replayable],
    old: RuleSet,
    new: RuleSet,
    *,
    zone: ZoneInfo,
    open_at: OpenAt,
    examples: int = 3,
) -> Summary:
    """The summary of replaying ``items`` through ``old`` and ``new`` (all at once)."""
    run = Replay(old, new, zone=zone, open_at=open_at, examples=examples)
    run.add(items)
    return run.summary()


@dataclass
class _Tally:
    """Counts of what changes between the two decisions, over the distinct pairs."""

    queues: Counter[tuple[str, str]] = field(default_factory=Counter)
    priorities: Counter[tuple[str, str]] = field(default_factory=Counter)
    slas: Counter[tuple[int | None, int | None]] = field(default_factory=Counter)
    newly: Counter[str] = field(default_factory=Counter)
    stopped: Counter[str] = field(default_factory=Counter)
    fired_new: Counter[str] = field(default_factory=Counter)
    added: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    gained_replies: Counter[str] = field(default_factory=Counter)
    lost_replies: Counter[str] = field(default_factory=Counter)
    changed: int = 0
    replies_old: int = 0
    replies_new: int = 0
    replies_changed: int = 0

    def add(
        self,
        old: Decision,
        new: Decision,
        count: int,
        samples: _Samples,
        sends: bool,
        shown: _Shown,
    ) -> None:
        """One distinct (old decision, new decision) pair seen ``count`` times."""
        self.queues[(old.queue, new.queue)] += count
        if old.queue != new.queue:
            shown.add(("queue", old.queue, new.queue), samples)
        if old.priority != new.priority:
            self.priorities[(str(old.priority), str(new.priority))] += count
            shown.add(("priority", str(old.priority), str(new.priority)), samples)
        if old.sla_seconds != new.sla_seconds:
            self.slas[(old.sla_seconds, new.sla_seconds)] += count
            shown.add(("sla", old.sla_seconds, new.sla_seconds), samples)
        for rule in new.rules:
            self.fired_new[rule] += count
        for rule in _missing(new.rules, old.rules):
            self.newly[rule] += count
            shown.add(("newly", rule), samples)
        for rule in _missing(old.rules, new.rules):
            self.stopped[rule] += count
            shown.add(("stopped", rule), samples)
        for line in _missing(new.instructions, old.instructions):
            self.added[line] += count
            shown.add(("added", line), samples)
        for line in _missing(old.instructions, new.instructions):
            self.lost[line] += count
            shown.add(("lost", line), samples)
        self._add_replies(old, new, count, samples, sends, shown)
        if _differs(old, new, sends):
            self.changed += count

    def _add_replies(
        self,
        old: Decision,
        new: Decision,
        count: int,
        samples: _Samples,
        sends: bool,
        shown: _Shown,
    ) -> None:
        before = old.auto_reply if sends else None
        after = new.auto_reply if sends else None
        self.replies_old += count if before else 0
        self.replies_new += count if after else 0
        if after and not before:
            self.gained_replies[after] += count
            shown.add(("reply+", after), samples)
        elif before and not after:
            self.lost_replies[before] += count
            shown.add(("reply-", before), samples)
        elif before and after and before != after:
            self.replies_changed += count
