"""What a conversation's timeline shows from the audit log, besides its messages. Pure.

Only the kinds below, and of their data only the keys listed: the audit log also holds what
an agent must not see in a timeline (addresses of refused threads, session details), and an
event kind added later shows up only once it is named here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: event kind -> the keys of its data the timeline shows
SHOWN: Mapping[str, tuple[str, ...]] = {
    "conversation.created": ("queue", "rules"),
    "conversation.reopened": ("queue", "rules"),
    "offer.sent": (),
    "offer.declined": ("reason",),
    "offer.timeout": (),
    "conversation.assigned": (),
    "conversation.transferred": ("queue", "to_agent", "note", "reason"),
    "conversation.requeued": ("reason",),
    "conversation.moved": ("queue", "priority"),
    "conversation.closed": ("disposition",),
    "conversation.abandoned": (),
    "auto_reply.queued": (),
    "identity.claim_confirmed": ("kind", "address", "customer_number"),
    "identity.claim_rejected": ("kind", "address", "customer_number"),
}
LIMIT = 500  # the newest this many; a conversation with more shows the latest


def _clean(value: Any) -> Any:
    """Text and lists of text as they are; anything else as text (data is JSON already)."""
    if isinstance(value, list):
        return [str(item) for item in value][:50]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def timeline_events(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """``events`` rows (``at``, ``kind``, ``agent``, ``data``) as the frame's timeline entries."""
    shown = []
    for row in rows:
        keys = SHOWN.get(row.kind)
        if keys is None:
            continue
        data = row.data if isinstance(row.data, dict) else {}
        shown.append(
            {
                "at": float(row.at),
                "kind": row.kind,
                "agent": row.agent,
                "data": {key: _clean(data[key]) for key in keys if key in data},
            }
        )
    return shown
