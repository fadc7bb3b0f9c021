"""A replay summary as text for a terminal (``rules diff --format text``)."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.replay.diff import Change, Counted, Example, Summary
from rules.decision import Decision


def _sla(value: str | int | None) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}s"


def _examples(ids: list[str]) -> str:
    return f"  (e.g. {', '.join(ids)})" if ids else ""


def _counted(title: str, entries: list[Counted]) -> list[str]:
    if not entries:
        return []
    lines = [title]
    lines += [f"  {e.messages:>7}  {e.name}{_examples(e.examples)}" for e in entries]
    return lines


def _changes(title: str, entries: list[Change], sla: bool = False) -> list[str]:
    if not entries:
        return []
    show = _sla if sla else str
    lines = [title]
    lines += [
        f"  {e.messages:>7}  {show(e.old)} -> {show(e.new)}{_examples(e.examples)}" for e in entries
    ]
    return lines


def _decision(decision: Decision) -> str:
    parts = [f"queue {decision.queue}", f"priority {decision.priority}"]
    if decision.sla_seconds is not None:
        parts.append(f"sla {_sla(decision.sla_seconds)}")
    parts.append(f"rules [{', '.join(decision.rules)}]")
    return ", ".join(parts)


def _example(example: Example) -> list[str]:
    when = datetime.fromtimestamp(example.received_at, UTC).strftime("%Y-%m-%d %H:%M")
    lines = [
        f"  {example.message_id}  {example.channel}/{example.inbox}  {when}"
        + ("" if example.has_context else "  (envelope only)"),
        f"    {example.subject + ': ' if example.subject else ''}{example.excerpt}",
        f"    now:      {_decision(example.old)}",
        f"    proposed: {_decision(example.new)}",
    ]
    for side, trace in (("now", example.old_trace), ("proposed", example.new_trace)):
        for entry in trace:
            detail = entry.get("error") or ", ".join(
                f"{key} {value}" for key, value in (entry.get("set") or {}).items()
            )
            lines.append(f"      {side}: {entry['rule']} {entry['result']} {detail}".rstrip())
    return lines


def render(summary: Summary) -> str:
    """Counts first, then the examples with the rules that mattered."""
    lines = [
        f"replayed {summary.messages} messages: rules {summary.against[:12]} (now) -> "
        f"{summary.proposed[:12]} (proposed)",
        f"{summary.changed} would be handled differently",
    ]
    if summary.without_context:
        lines.append(
            f"{summary.without_context} were stored before recording what the rules saw: "
            "replayed with their envelope only (customer unknown)"
        )
    lines.append("queues (now -> proposed):")
    for move in summary.queues:
        mark = " " if move.old_queue == move.new_queue else "*"
        lines.append(
            f" {mark}{move.messages:>7}  {move.old_queue} -> {move.new_queue}"
            f"{_examples(move.examples)}"
        )
    lines += _changes("priority changes:", summary.priorities)
    lines += _changes("SLA changes:", summary.slas, sla=True)
    lines += _counted("rules newly firing:", summary.newly_firing)
    lines += _counted("rules no longer firing:", summary.stopped_firing)
    if summary.never_firing:
        lines.append(f"rules that fire on no message: {', '.join(summary.never_firing)}")
    lines += _counted("instructions added:", summary.instructions_added)
    lines += _counted("instructions lost:", summary.instructions_lost)
    replies = summary.auto_replies
    lines.append(f"auto-replies that would be sent: {replies.old} now, {replies.new} proposed")
    lines += _counted("  gained:", replies.gained)
    lines += _counted("  lost:", replies.lost)
    if replies.changed:
        lines.append(f"  {replies.changed} with another text")
    for error in summary.errors:
        side = "now" if error.side == "old" else "proposed"
        lines.append(
            f"rule {error.rule} ({side}) failed on {error.messages} messages: {error.error}"
        )
    if summary.examples:
        lines.append("examples:")
        for example in summary.examples.values():
            lines += _example(example)
    return "\n".join(lines)
